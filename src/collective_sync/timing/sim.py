"""Discrete-event simulation of clocks and links, for deterministic tests and benchmarks.

True time is the server's clock. A client's oscillator has an offset, a skew (ppm) and an
optional random-walk wander; each link direction has a base delay, a jitter distribution (incl.
heavy tails), loss, and an optional route change that adds delay from some instant on. All
randomness comes from one seeded numpy Generator, so a scenario is a fixed trace.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .estimator import Sample
from .pll import DisciplinedClock, PllConfig

Jitter = Callable[[np.random.Generator], float]


def no_jitter(rng: np.random.Generator) -> float:
    return 0.0


def normal_jitter(sd: float) -> Jitter:
    return lambda rng: abs(float(rng.normal(0.0, sd)))


def pareto_jitter(mean: float, shape: float = 2.0, cap: float = 5.0) -> Jitter:
    """Lomax (Pareto II) queueing delay ≥ 0 with the given mean: heavy-tailed, like bufferbloat."""
    scale = mean * (shape - 1.0)
    return lambda rng: min(cap, scale * float(rng.pareto(shape)))


def bounded_pareto_jitter(mean: float, cap: float, shape: float = 1.5) -> Jitter:
    scale = mean * (shape - 1.0)
    return lambda rng: min(cap, scale * float(rng.pareto(shape)))


@dataclass
class Direction:
    """One direction of a link. Bursts follow a two-state (Gilbert-Elliott) model: a packet
    enters a burst with probability `burst_start`, a burst lasts `burst_length` packets on
    average, and inside it packets get `burst_delay` more and are lost with `burst_loss`."""

    base: float
    jitter: Jitter = no_jitter
    loss: float = 0.0
    burst_start: float = 0.0
    burst_length: float = 10.0
    burst_delay: float = 0.0
    burst_loss: float = 0.0
    _in_burst: bool = field(default=False, repr=False)

    def delay(self, rng: np.random.Generator) -> float | None:
        if self.burst_start:
            if self._in_burst:
                self._in_burst = rng.random() >= 1.0 / self.burst_length
            else:
                self._in_burst = rng.random() < self.burst_start
        loss = self.burst_loss if self._in_burst else self.loss
        if loss and rng.random() < loss:
            return None
        extra = self.burst_delay if self._in_burst else 0.0
        return self.base + self.jitter(rng) + extra


@dataclass
class Link:
    up: Direction  # client → server
    down: Direction  # server → client
    route_change_at: float | None = None  # true time at which ...
    route_change_add: float = 0.0  # ... both directions get this much slower


@dataclass
class Oscillator:
    """Local clock = true time + offset + skew·t + wander (random walk in frequency, per 1 s)."""

    offset: float
    skew: float  # dimensionless: 150e-6 = +150 ppm
    wander: float = 0.0  # frequency random-walk step (dimensionless per √s)
    seed: int = 0
    _freq_walk: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed + 7919)
        steps = rng.normal(0.0, self.wander, 4096) if self.wander else np.zeros(4096)
        self._freq_walk = np.concatenate([[0.0], np.cumsum(steps)])  # extra freq during second k
        self._phase_walk = np.concatenate([[0.0], np.cumsum(self._freq_walk[:-1])])

    def local(self, t: float) -> float:
        k = min(int(t), len(self._freq_walk) - 2)
        extra = self._phase_walk[k] + self._freq_walk[k] * (t - k) if self.wander else 0.0
        return t + self.offset + self.skew * t + extra


class PacketTrace:
    """Pre-drawn per-packet delays (None = lost) for each direction, consumed in send order.

    Drawing them up front lets two clock algorithms (ours, and a reference one in another
    language) run over exactly the same network: the k-th packet each sends sees the same fate.
    """

    def __init__(self, link: Link, seed: int, n: int = 20_000):
        rng = np.random.default_rng(seed)
        self.link = link
        self.up = [link.up.delay(rng) for _ in range(n)]
        self.down = [link.down.delay(rng) for _ in range(n)]
        self._i = {"up": 0, "down": 0}

    def next(self, direction: str, t: float) -> float | None:
        """The next packet's delay in `direction` if sent at true time `t` (route change applied)."""
        i = self._i[direction]
        self._i[direction] = i + 1
        draws = self.up if direction == "up" else self.down
        delay = draws[i % len(draws)]
        link = self.link
        if delay is not None and link.route_change_at is not None and t >= link.route_change_at:
            delay += link.route_change_add
        return delay

    def to_json(self) -> dict[str, object]:
        link = self.link
        return {
            "up": self.up,
            "down": self.down,
            "routeChangeAt": link.route_change_at,
            "routeChangeAdd": link.route_change_add,
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    link: Link
    duration: float = 300.0
    offset: float = 3.0
    skew: float = 150e-6
    wander: float = 0.0


def scenarios() -> dict[str, Scenario]:
    """The benchmark's fixed scenarios (issue #3): 3 s initial offset, ±150 ppm skew."""
    ms = 1e-3
    return {
        "lan": Scenario(
            "lan",
            Link(
                Direction(0.2 * ms, normal_jitter(0.05 * ms)), Direction(0.2 * ms, normal_jitter(0.05 * ms))
            ),
        ),
        "wifi": Scenario(
            "wifi",
            Link(
                Direction(20 * ms, bounded_pareto_jitter(6 * ms, 30 * ms), 0.005),
                Direction(20 * ms, bounded_pareto_jitter(2 * ms, 30 * ms), 0.005),
            ),
            skew=-150e-6,
        ),
        "mobile": Scenario(
            "mobile",
            Link(
                Direction(60 * ms, pareto_jitter(40 * ms), 0.02),
                Direction(60 * ms, pareto_jitter(40 * ms), 0.02),
                route_change_at=150.0,
                route_change_add=40 * ms,
            ),
        ),
        "asymmetric": Scenario(
            "asymmetric",
            Link(Direction(15 * ms, normal_jitter(0.1 * ms)), Direction(5 * ms, normal_jitter(0.1 * ms))),
        ),
    }


@dataclass
class ClockTrace:
    t: np.ndarray  # true time of each evaluation
    error: np.ndarray  # network time - true time
    locked: np.ndarray  # bool
    probes: int
    samples: int
    monotonic_violations: int

    def time_to_lock(self, within: float = 1e-3) -> float:
        """First true time after which |error| stays within `within` (inf if never)."""
        bad = np.flatnonzero(~(np.abs(self.error) <= within))  # NaN (no estimate yet) counts as bad
        if not bad.size:
            return float(self.t[0])
        return float(self.t[bad[-1] + 1]) if bad[-1] + 1 < self.t.size else float("inf")


def simulate_clock(
    scenario: Scenario,
    seed: int = 1,
    config: PllConfig | None = None,
    eval_dt: float = 0.01,
    processing: float = 20e-6,
    clock: DisciplinedClock | None = None,
    trace: PacketTrace | None = None,
) -> ClockTrace:
    """Run one client's exchanges against the true server clock; sample the error on a grid."""
    packets = trace or PacketTrace(scenario.link, seed)
    osc = Oscillator(scenario.offset, scenario.skew, scenario.wander, seed)
    dc = clock or DisciplinedClock(config)
    events: list[tuple[float, int, str, tuple[float, ...]]] = []  # (true time, tiebreak, kind, data)
    counter = 0
    heapq.heappush(events, (0.0, counter, "probe", ()))
    n_grid = int(scenario.duration / eval_dt)
    grid_t = np.arange(n_grid) * eval_dt
    err = np.empty(n_grid)
    locked = np.zeros(n_grid, dtype=bool)
    gi = 0
    probes = samples = 0
    last_net = -np.inf
    violations = 0
    while events:
        te, _, kind, data = heapq.heappop(events)
        if te >= scenario.duration:
            break
        while gi < n_grid and grid_t[gi] < te:
            net = dc.to_network(osc.local(grid_t[gi])) if dc._have_phase else np.nan
            err[gi] = net - grid_t[gi]
            locked[gi] = dc.locked
            if dc.locked:
                if net <= last_net:
                    violations += 1
                last_net = net
            gi += 1
        if kind == "probe":
            probes += 1
            t0 = osc.local(te)
            up = packets.next("up", te)
            if up is not None:
                t1 = te + up
                t2 = t1 + processing
                down = packets.next("down", t2)
                if down is not None:
                    counter += 1
                    heapq.heappush(events, (t2 + down, counter, "reply", (t0, t1, t2)))
            counter += 1
            heapq.heappush(events, (te + dc.next_probe_interval(), counter, "probe", ()))
        else:
            t0, t1, t2 = data
            before = dc.to_network(osc.local(te)) if dc.locked else None
            dc.add_sample(Sample(t0, t1, t2, osc.local(te)))
            samples += 1
            if before is not None and dc.to_network(osc.local(te)) < before:
                violations += 1  # a backwards step at the update instant
    while gi < n_grid:
        err[gi] = dc.to_network(osc.local(grid_t[gi])) - grid_t[gi]
        locked[gi] = dc.locked
        gi += 1
    return ClockTrace(grid_t, err, locked, probes, samples, violations)
