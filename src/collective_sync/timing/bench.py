"""`collective-sync bench clock`: the timing core against fixed, seeded network scenarios.

Every scenario starts 3 s off with ±150 ppm skew. Our clock and @ircam/sync (the time sync of
Ircam's soundworks, run under Node in virtual time by bench/ircam/cosim.mjs) consume the same
pre-drawn packet trace. A playout simulation then has N receivers apply a leader's updates
through their own clocks and jitter buffers, and measures how far apart in true time they apply
the same update.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .jitter import Item, JitterBuffer
from .sim import ClockTrace, PacketTrace, Scenario, scenarios, simulate_clock

EVAL_DT = 0.01
PROCESSING = 20e-6


def error_stats(t: np.ndarray, err: np.ndarray, start: float) -> dict[str, float]:
    """|error| percentiles (microseconds) from true time `start` on."""
    e = np.abs(err[(t >= start) & np.isfinite(err)]) * 1e6
    if not e.size:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan")}
    p50, p99 = np.percentile(e, [50, 99])
    return {
        "p50_us": round(float(p50), 1),
        "p99_us": round(float(p99), 1),
        "max_us": round(float(e.max()), 1),
    }


def within(t: np.ndarray, err: np.ndarray, bound: float) -> float:
    """First true time after which |error| stays within `bound` (inf if never)."""
    bad = np.flatnonzero(~(np.abs(err) <= bound))
    if not bad.size:
        return float(t[0])
    return float(t[bad[-1] + 1]) if bad[-1] + 1 < t.size else float("inf")


def monotonic_violations(t: np.ndarray, err: np.ndarray, start: float) -> int:
    net = (t + err)[(t >= start) & np.isfinite(err)]
    return int((np.diff(net) <= 0).sum())


def run_ours(sc: Scenario, seed: int) -> tuple[ClockTrace, dict[str, Any]]:
    tr = simulate_clock(
        sc, seed=seed, eval_dt=EVAL_DT, processing=PROCESSING, trace=PacketTrace(sc.link, seed)
    )
    lock = float(tr.t[np.argmax(tr.locked)]) if tr.locked.any() else float("inf")
    return tr, {
        "lock_s": round(lock, 3),
        "within_1ms_s": round(within(tr.t, tr.error, 1e-3), 3),
        "after_lock": error_stats(tr.t, tr.error, lock),
        "steady": error_stats(tr.t, tr.error, sc.duration / 2),
        "monotonicity_violations": tr.monotonic_violations,
        "probes_per_s": round(tr.probes / sc.duration, 2),
    }


def run_ircam(
    sc: Scenario, seed: int, ircam_dir: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    node = shutil.which("node")
    if node is None or not (ircam_dir / "node_modules" / "@ircam" / "sync").exists():
        return None
    job = {
        "offset": sc.offset,
        "skew": sc.skew,
        "duration": sc.duration,
        "evalDt": EVAL_DT,
        "processing": PROCESSING,
        "seed": seed,
        "trace": PacketTrace(sc.link, seed).to_json(),
    }
    out = subprocess.run(
        [node, str(ircam_dir / "cosim.mjs")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    res = json.loads(out.stdout)
    t = np.array(res["t"], dtype=float)
    err = np.array([np.nan if x is None else x for x in res["error"]], dtype=float)
    lock = float(res["firstSync"]) if res["firstSync"] is not None else float("inf")
    return (
        t,
        err,
        {
            "lock_s": round(lock, 3),
            "within_1ms_s": round(within(t, err, 1e-3), 3),
            "after_lock": error_stats(t, err, lock),
            "steady": error_stats(t, err, sc.duration / 2),
            "monotonicity_violations": monotonic_violations(t, err, lock),
        },
    )


@dataclass
class PlayoutResult:
    delay: float
    late_ratio: float
    added_delay_ms: float
    spread_p50_ms: float
    spread_p99_ms: float
    spread_max_ms: float
    suggested_delay_ms: float
    suggested_max_ms: float
    receivers: int
    updates: int


def simulate_playout(
    sc: Scenario, receivers: int = 8, seed: int = 1, delay: float | None = None, rate: float = 30.0
) -> PlayoutResult:
    """N receivers, each with its own oscillator, link draws, disciplined clock and jitter
    buffer, apply a leader's updates; measure the true-time spread of each application.

    With `delay=None` the session's D is chosen as a leader would announce it: a first pass at
    the default D collects every receiver's adaptive suggestion, and D is the largest of them
    (rounded up to 10 ms), since one late receiver breaks simultaneity for all.
    """
    if delay is None:
        first = simulate_playout(sc, receivers, seed, 0.15, rate)
        delay = float(np.ceil(first.suggested_max_ms / 10.0) / 100.0)
    rng = np.random.default_rng(seed + 4242)

    def clock_error(k: int) -> ClockTrace:
        osc = Scenario(
            sc.name, sc.link, sc.duration, float(rng.uniform(-3, 3)), float(rng.uniform(-150e-6, 150e-6))
        )
        return simulate_clock(osc, seed=seed * 100 + k, eval_dt=EVAL_DT)

    leader = clock_error(0)
    rx = [clock_error(k + 1) for k in range(receivers)]
    buffers = [JitterBuffer(delay) for _ in rx]
    start, end = 20.0, sc.duration - 5.0
    sends = np.arange(start, end, 1.0 / rate)
    up = [sc.link.up.delay(rng) for _ in sends]
    spreads, added = [], []
    for k, s in enumerate(sends):
        at = s + float(np.interp(s, leader.t, leader.error))
        uplink = up[k]
        if uplink is None:
            continue  # lost on the way to the server (TCP would retransmit: counts as no update)
        applied = []
        for tr, jb in zip(rx, buffers, strict=True):
            down = sc.link.down.delay(rng)
            arrival = s + uplink + (down if down is not None else sc.link.down.base + 0.2)  # loss: RTO
            arr_net = arrival + float(np.interp(arrival, tr.t, tr.error))
            due = at + delay
            if jb.push(Item(at, "leader", k, ("geometry.R",)), arr_net):
                when = arrival  # late but still the newest value: applied on arrival
            elif due <= arr_net:
                continue  # late and superseded: dropped
            else:
                jb.pop_due(due)
                when = due - float(np.interp(due, tr.t, tr.error))  # true time its clock reads `due`
            applied.append(when)
            added.append(when - arrival)
        if len(applied) == receivers:
            spreads.append(max(applied) - min(applied))
    late_ratio = float(np.mean([jb.stats.late_ratio for jb in buffers]))
    sp = np.array(spreads) * 1e3
    return PlayoutResult(
        delay,
        round(late_ratio, 5),
        round(float(np.mean(added)) * 1e3, 2),
        round(float(np.percentile(sp, 50)), 3),
        round(float(np.percentile(sp, 99)), 3),
        round(float(sp.max()), 3),
        round(float(np.mean([jb.suggested_delay for jb in buffers])) * 1e3, 1),
        round(float(np.max([jb.suggested_delay for jb in buffers])) * 1e3, 1),
        receivers,
        len(sends),
    )


def run(seed: int = 1, ircam_dir: Path | None = None, plots: Path | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"seed": seed, "scenarios": {}}
    traces: dict[str, tuple[ClockTrace, Any]] = {}
    for name, sc in scenarios().items():
        tr, ours = run_ours(sc, seed)
        entry: dict[str, Any] = {"ours": ours}
        ref = run_ircam(sc, seed, ircam_dir) if ircam_dir is not None else None
        if ref is not None:
            entry["ircam_sync"] = ref[2]
            o, r = ours["after_lock"]["p99_us"], ref[2]["after_lock"]["p99_us"]
            entry["p99_ratio_ircam_over_ours"] = round(r / o, 1) if o else None
        traces[name] = (tr, ref)
        report["scenarios"][name] = entry
    wifi = simulate_playout(scenarios()["wifi"], seed=seed)
    report["playout_wifi"] = wifi.__dict__
    if plots is not None:
        plot(traces, plots)
    return report


def plot(traces: dict[str, tuple[ClockTrace, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for name, (tr, ref) in traces.items():
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
        if ref is not None:
            ax.semilogy(ref[0], np.abs(ref[1]) * 1e3, lw=0.7, color="tab:orange", label="@ircam/sync")
        ax.semilogy(tr.t, np.abs(tr.error) * 1e3, lw=0.7, color="tab:blue", label="Collective Sync")
        ax.set_xlabel("true time (s)")
        ax.set_ylabel("|network time error| (ms)")
        ax.set_title(f"Clock error over time: {name} (3 s initial offset, ±150 ppm)")
        ax.set_ylim(1e-4, 5e3)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(out / f"clock_{name}.png")
        plt.close(fig)


def table(report: dict[str, Any]) -> str:
    rows = [
        "| scenario | clock | lock (s) | within 1 ms (s) | p50 µs | p99 µs | max µs | p99 µs, 2nd half | "
        "monotonicity violations |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["scenarios"].items():
        for label, key in (("Collective Sync", "ours"), ("@ircam/sync", "ircam_sync")):
            r = entry.get(key)
            if r is None:
                continue
            a = r["after_lock"]
            rows.append(
                f"| {name} | {label} | {r['lock_s']} | {r['within_1ms_s']} | {a['p50_us']} | {a['p99_us']} | "
                f"{a['max_us']} | {r['steady']['p99_us']} | {r['monotonicity_violations']} |"
            )
    return "\n".join(rows)
