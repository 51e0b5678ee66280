"""`collective-sync bench clock`: the timing core against fixed, seeded network scenarios.

Every scenario starts 3 s off with ±150 ppm skew unless it is about the skew. The base scenarios
are the paths the clock was built against; the stress scenarios (issue #8) are the conditions
people live in: sleeping devices, clocks that are set, one-way congestion, cheap crystals and
thermal drift, outages, corrupt replies. Our clock and @ircam/sync (the time sync of Ircam's
soundworks, run under Node in virtual time by bench/ircam/cosim.mjs) consume the same pre-drawn
packet trace, oscillator and corruptions. A playout simulation then has N receivers apply a
leader's updates through their own clocks and jitter buffers, and measures how far apart in true
time they apply the same update.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .jitter import Item, JitterBuffer
from .sim import ClockTrace, PacketTrace, Scenario, scenarios, settle_time, simulate_clock, stress_scenarios

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


def monotonic_violations(t: np.ndarray, err: np.ndarray, start: float) -> int:
    net = (t + err)[(t >= start) & np.isfinite(err)]
    return int((np.diff(net) <= 0).sum())


def recovery_times(t: np.ndarray, err: np.ndarray, sc: Scenario, bound: float = 1e-3) -> list[float]:
    """Per disruption (wake-up or clock step): seconds until |error| stays within `bound` up to
    the next disruption or the end (inf if never)."""
    out = []
    marks = [*sc.disruptions, float(t[-1]) + 1.0]
    for d, nxt in itertools.pairwise(marks):
        m = (t >= d) & (t < nxt)
        settle = settle_time(t[m], err[m], bound, start=d)
        out.append(round(settle - d, 3) if np.isfinite(settle) else settle)
    return out


def settled(t: np.ndarray, err: np.ndarray, sc: Scenario, recovery: list[float], start: float) -> np.ndarray:
    """Mask of instants from `start` on, outside the recovery windows after disruptions."""
    keep = (t >= start) & np.isfinite(err)
    for d, r in zip(sc.disruptions, recovery, strict=True):
        keep &= ~((t >= d) & (t < d + (r if np.isfinite(r) else np.inf)))
    return keep


def _stats(t: np.ndarray, err: np.ndarray, sc: Scenario, lock: float) -> dict[str, Any]:
    rec = recovery_times(t, err, sc) if sc.disruptions else []
    keep = settled(t, err, sc, rec, max(lock, 10.0))
    fake = np.where(keep, err, np.nan)
    return {
        "lock_s": round(lock, 3),
        "within_1ms_s": round(settle_time(t, err, 1e-3), 3) if not sc.disruptions else None,
        "after_lock": error_stats(t, err, lock),
        "settled": error_stats(t, fake, 0.0),  # after 10 s, outside recoveries
        "recovery_s": rec,
    }


def run_ours(sc: Scenario, seed: int) -> tuple[ClockTrace, dict[str, Any]]:
    tr = simulate_clock(
        sc, seed=seed, eval_dt=EVAL_DT, processing=PROCESSING, trace=PacketTrace(sc.link, seed)
    )
    lock = float(tr.t[np.argmax(tr.locked)]) if tr.locked.any() else float("inf")
    out = _stats(tr.t, tr.error, sc, lock)
    ok = np.isfinite(tr.error) & (tr.t >= lock)
    out["bound_coverage"] = (
        round(float(np.mean(np.abs(tr.error[ok]) <= tr.bound[ok])), 4) if ok.any() else None
    )
    out["monotonicity_violations"] = tr.monotonic_violations
    out["probes_per_s"] = round(tr.probes / sc.duration, 2)
    return tr, out


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
        "oscillator": sc.oscillator(seed).to_json(),
        "corrupt": [list(c) for c in sorted(sc.corrupt)],
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
    stats = _stats(t, err, sc, lock)
    stats["monotonicity_violations"] = monotonic_violations(t, err, lock)
    stats["non_finite"] = int(res.get("nonFinite", 0))
    return t, err, stats


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


def run(
    seed: int = 1, ircam_dir: Path | None = None, plots: Path | None = None, only: str | None = None
) -> dict[str, Any]:
    report: dict[str, Any] = {"seed": seed, "scenarios": {}}
    traces: dict[str, tuple[Scenario, ClockTrace, Any]] = {}
    for name, sc in {**scenarios(), **stress_scenarios()}.items():
        if only and only not in name:
            continue
        tr, ours = run_ours(sc, seed)
        entry: dict[str, Any] = {"group": sc.group, "ours": ours}
        ref = run_ircam(sc, seed, ircam_dir) if ircam_dir is not None else None
        if ref is not None:
            entry["ircam_sync"] = ref[2]
        traces[name] = (sc, tr, ref)
        report["scenarios"][name] = entry
    if not only:
        wifi = simulate_playout(scenarios()["wifi"], seed=seed)
        report["playout_wifi"] = wifi.__dict__
    if plots is not None:
        plot(traces, plots)
    return report


GROUP_TITLES = {
    "base": "Base paths (3 s initial offset, ±150 ppm)",
    "discontinuity": "Sleeping devices and clocks that are set (dashed: traffic resumes)",
    "skew": "Cheap crystals and thermal drift",
    "one-way": "One direction's delay changes (flaps, bufferbloat, ramps)",
    "outage": "Outage and corrupt replies",
    "corrupt": "Outage and corrupt replies",
    "limit": "Beyond what two-way timing can resolve",
}


def plot(traces: dict[str, tuple[Scenario, ClockTrace, Any]], out: Path) -> None:
    """One figure per group of scenarios: |error| over time, ours and @ircam/sync."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for name, (sc, _, _) in traces.items():
        key = "outage" if sc.group == "corrupt" else sc.group
        groups.setdefault(key, []).append(name)
    for group, names in groups.items():
        fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.1 * len(names) + 0.6), dpi=90, squeeze=False)
        for ax, name in zip(axes[:, 0], names, strict=True):
            sc, tr, ref = traces[name]
            step = max(1, tr.t.size // 6000)  # thin long runs: the plot shows at most ~6,000 points
            if ref is not None:
                ax.semilogy(
                    ref[0][::step],
                    np.abs(ref[1][::step]) * 1e3,
                    lw=0.6,
                    color="tab:orange",
                    label="@ircam/sync",
                )
            ax.semilogy(
                tr.t[::step],
                np.abs(tr.error[::step]) * 1e3,
                lw=0.6,
                color="tab:blue",
                label="Collective Sync",
            )
            ax.semilogy(
                tr.t[::step],
                tr.bound[::step] * 1e3,
                lw=0.5,
                color="tab:blue",
                alpha=0.35,
                ls=":",
                label="its bound",
            )
            for d in sc.disruptions:
                ax.axvline(d, color="grey", lw=0.6, ls="--")
            ax.axhline(1.0, color="tab:red", lw=0.5, alpha=0.5)
            ax.set_ylim(1e-3, 1e5)
            ax.set_title(name, fontsize=9, loc="left")
            ax.set_ylabel("|error| (ms)", fontsize=8)
            ax.grid(True, which="major", alpha=0.3)
            ax.tick_params(labelsize=7)
        axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
        axes[-1, 0].set_xlabel("true time (s)", fontsize=8)
        fig.suptitle(GROUP_TITLES.get(group, group), fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"clock_{group}.png")
        plt.close(fig)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not np.isfinite(x):
        return "never"
    return str(x)


def table(report: dict[str, Any]) -> str:
    rows = [
        "| scenario | clock | lock (s) | recovery (s) | p50 µs | p99 µs | max µs | bound coverage | "
        "backwards |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["scenarios"].items():
        for label, key in (("Collective Sync", "ours"), ("@ircam/sync", "ircam_sync")):
            r = entry.get(key)
            if r is None:
                continue
            a = r["settled"]
            rec = ", ".join(_fmt(x) for x in r["recovery_s"]) or "-"
            nan = f" ({r['non_finite']} NaN)" if r.get("non_finite") else ""
            rows.append(
                f"| {name} | {label} | {_fmt(r['lock_s'])} | {rec} | {a['p50_us']} | {a['p99_us']}{nan} | "
                f"{a['max_us']} | {_fmt(r.get('bound_coverage'))} | {r['monotonicity_violations']} |"
            )
    return "\n".join(rows)
