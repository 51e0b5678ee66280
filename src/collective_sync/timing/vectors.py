"""Shared test vectors: the Python timing core's inputs and outputs, for other implementations.

The browser SDK ports the estimator, clock, jitter buffer and scheduler to JavaScript; both
`pytest` and `node --test` check their implementation against the same file, so the two cannot
drift apart. Regenerate with `python -m collective_sync.timing.vectors tests/vectors/timing.json`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from .estimator import EstimatorConfig, Sample
from .jitter import FORGET_EVERY, AdaptiveDelayConfig, Item, JitterBuffer
from .pll import DisciplinedClock, PllConfig
from .scheduler import Scheduler
from .sim import Breakpoints, Link, Scenario, episode, scenarios, simulate_clock, stress_scenarios


class _Recording(DisciplinedClock):
    """Records every sample fed to the clock and every read, with the clock's outputs right
    after it, so another implementation can replay the exact sequence."""

    def __init__(self, log_reads: bool) -> None:
        super().__init__()
        self.steps_log: list[dict[str, Any]] = []
        self.log_reads = log_reads  # only where the local clock goes back do reads change state

    def read(self, local: float) -> float:
        net = super().read(local)
        if self.log_reads:
            self.steps_log.append({"read": local, "network": net, "events": self._events_since()})
        return net

    def _events_since(self) -> list[list[Any]]:
        return [[e.kind, e.local, e.amount, e.duration] for e in self.drain_events()]

    def add_sample(self, sample: Sample) -> Any:
        est = super().add_sample(sample)
        probe = sample.t3 + 0.1
        net = self.to_network(probe)
        self.steps_log.append(
            {
                # Corrupt replies carry non-finite stamps, which JSON cannot: "NaN", "Infinity".
                "sample": [_num(x) for x in (sample.t0, sample.t1, sample.t2, sample.t3)],
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
                "errorAt": self.error_at(probe),
                "nextProbeInterval": self.next_probe_interval(),
                "rejected": self.estimator.rejected,
                "discontinuities": self.estimator.discontinuities,
                "events": self._events_since(),
            }
        )
        return est


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x).replace("inf", "Infinity").replace("nan", "NaN")


def clock_vectors() -> list[dict[str, Any]]:
    cases = []
    base = scenarios()
    stress = stress_scenarios()
    picks: list[tuple[str, Scenario, float, int]] = [
        ("lan", base["lan"], 15.0, 1),
        ("wifi", base["wifi"], 20.0, 2),
        ("mobile", base["mobile"], 20.0, 3),
        ("suspend", replace(stress["suspend-60s"], freezes=((10.0, 8.0),)), 30.0, 1),
        ("step-back", replace(stress["step-60s"], steps=((10.0, -5.0),)), 30.0, 2),
        ("step-forward", replace(stress["step+1s-lan"], steps=((8.0, 1.0),)), 20.0, 3),
        (
            "corrupt",
            replace(stress["corrupt"], corrupt=tuple((t / 6, k, v) for t, k, v in stress["corrupt"].corrupt)),
            30.0,
            1,
        ),
        (
            "up-bloat",
            replace(
                stress["up-bloat"],
                link=_with_up_extra(stress["up-bloat"].link, episode(8.0, 2.0, 6.0, 2.0, 0.2)),
            ),
            30.0,
            2,
        ),
        ("skew-ramp", replace(stress["skew-ramp"], ramp=(3.0, 27.0, 2e-6)), 30.0, 3),
        ("ppm+500", stress["ppm+500"], 15.0, 1),
    ]
    for name, sc, duration, seed in picks:
        if sc.link.route_change_at is not None:
            sc = replace(sc, link=replace(sc.link, route_change_at=duration / 2))
        sc = replace(sc, duration=duration)
        clock = _Recording(log_reads=name == "step-back")
        simulate_clock(sc, seed=seed, clock=clock, eval_dt=0.5)  # reads: enough to see jumps
        cases.append({"name": name, "steps": clock.steps_log})
    return cases


def _with_up_extra(link: Link, extra: Breakpoints) -> Link:
    return replace(link, up=replace(link.up, extra=extra))


def default_constants() -> dict[str, Any]:
    """The tuning constants, so a port cannot silently run with different ones."""
    return {
        "estimator": asdict(EstimatorConfig()),
        "pll": asdict(PllConfig()),
        "adaptiveDelay": asdict(AdaptiveDelayConfig()),
        "jitter": {
            "memory": JitterBuffer().memory,
            "maxKeys": JitterBuffer().max_keys,
            "forgetEvery": FORGET_EVERY,
        },
    }


def jitter_vectors(memory: float = 60.0, max_keys: int = 65_536, distinct: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    jb = JitterBuffer(delay=0.12, memory=memory, max_keys=max_keys)
    ops: list[dict[str, Any]] = []
    t = 100.0
    for k in range(400):
        t += 0.02
        at = t - float(rng.uniform(0, 0.01))  # sender clocks a little apart: some reordering
        transit = 0.03 + float(rng.pareto(2.0)) * 0.03
        sender = "pa" if k % 3 else "pb"
        keys = ["geometry.R"] if k % 2 else ["geometry.R", "oscillators.0.f"]
        if distinct:  # every update its own key: the per-key memory must stay bounded
            keys = [f"k{k}"]
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
        "memory": memory,
        "maxKeys": max_keys,
        "distinct": distinct,
        "remembered": len(jb._newest),
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
    return {
        "clock": clock_vectors(),
        "jitter": jitter_vectors(),
        "jitterBounded": jitter_vectors(memory=1.0, max_keys=64, distinct=True),
        "scheduler": scheduler_vectors(),
        "defaults": default_constants(),
    }


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/vectors/timing.json"
    with open(path, "w") as f:
        json.dump(make_vectors(), f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
