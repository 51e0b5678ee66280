"""Shared test vectors: the Python timing core's inputs and outputs, for other implementations.

The browser SDK ports the estimator, clock, jitter buffer and scheduler to JavaScript; both
`pytest` and `node --test` check their implementation against the same file, so the two cannot
drift apart. Regenerate with `python -m collective_sync.timing.vectors tests/vectors/timing.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from .estimator import Sample
from .jitter import Item, JitterBuffer
from .pll import DisciplinedClock
from .scheduler import Scheduler
from .sim import Scenario, scenarios, simulate_clock


class _Recording(DisciplinedClock):
    """Records every sample fed to the clock and the clock's outputs right after it."""

    def __init__(self) -> None:
        super().__init__()
        self.steps_log: list[dict[str, Any]] = []

    def add_sample(self, sample: Sample) -> Any:
        est = super().add_sample(sample)
        probe = sample.t3 + 0.1
        net = self.to_network(probe)
        self.steps_log.append(
            {
                "sample": [sample.t0, sample.t1, sample.t2, sample.t3],
                "estimate": None
                if est is None
                else {
                    "offset": est.offset,
                    "skew": est.skew,
                    "delay": est.delay,
                    "error": est.error,
                    "samples": est.samples,
                    "skewError": est.skew_error,
                },
                "locked": self.locked,
                "freq": self.freq,
                "probe": probe,
                "network": net,
                "backToLocal": self.to_local(net),
                "nextProbeInterval": self.next_probe_interval(),
            }
        )
        return est


def clock_vectors() -> list[dict[str, Any]]:
    cases = []
    for name, duration, seed in (("lan", 20.0, 1), ("wifi", 30.0, 2), ("mobile", 30.0, 3)):
        sc = scenarios()[name]
        if sc.link.route_change_at is not None:
            sc = replace(sc, link=replace(sc.link, route_change_at=duration / 2))
        sc = Scenario(sc.name, sc.link, duration, sc.offset, sc.skew)
        clock = _Recording()
        simulate_clock(sc, seed=seed, clock=clock)
        cases.append({"name": name, "steps": clock.steps_log})
    return cases


def jitter_vectors() -> dict[str, Any]:
    rng = np.random.default_rng(11)
    jb = JitterBuffer(delay=0.12)
    ops: list[dict[str, Any]] = []
    t = 100.0
    for k in range(400):
        t += 0.02
        at = t - float(rng.uniform(0, 0.01))  # sender clocks a little apart: some reordering
        transit = 0.03 + float(rng.pareto(2.0)) * 0.03
        sender = "pa" if k % 3 else "pb"
        keys = ["geometry.R"] if k % 2 else ["geometry.R", "oscillators.0.f"]
        item = Item(at, sender, k, tuple(keys))
        late = jb.push(item, t + transit)
        ops.append(
            {
                "op": "push",
                "item": {"at": at, "sender": sender, "seq": k, "keys": keys},
                "arrival": t + transit,
                "late": [i.seq for i in late],
                "suggestedDelay": jb.suggested_delay,
            }
        )
        if k % 5 == 4:
            due = jb.pop_due(t)
            ops.append({"op": "popDue", "now": t, "due": [i.seq for i in due], "nextDue": jb.next_due()})
    s = jb.stats
    return {
        "delay": 0.12,
        "ops": ops,
        "stats": {
            "received": s.received,
            "applied": s.applied,
            "lateApplied": s.late_applied,
            "lateDropped": s.late_dropped,
            "reordered": s.reordered,
        },
    }


def scheduler_vectors() -> dict[str, Any]:
    sched = Scheduler(lambda net: net - 5.0)
    entries = [(3.0, "c"), (1.0, "a"), (3.0, "d"), (2.0, "b"), (0.5, "z")]
    for at, p in entries:
        sched.schedule(at, p)
    return {
        "offset": -5.0,
        "schedule": entries,
        "nextLocal": sched.next_local_deadline(),
        "popAt": [[1.0, sched.pop_due(1.0)], [3.0, sched.pop_due(3.0)]],
    }


def make_vectors() -> dict[str, Any]:
    return {"clock": clock_vectors(), "jitter": jitter_vectors(), "scheduler": scheduler_vectors()}


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/vectors/timing.json"
    with open(path, "w") as f:
        json.dump(make_vectors(), f, separators=(",", ":"))
        f.write("\n")
