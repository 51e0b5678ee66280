"""Discrete-event simulation of clocks and links, for deterministic tests and benchmarks.

True time is the server's clock. A client's oscillator has an offset, a skew (ppm), an optional
random-walk wander and skew ramp (thermal drift), and scripted discontinuities: suspensions
(the device sleeps, its clock stands still, nothing is sent or received) and steps. Each link
direction has a base delay, a jitter distribution (incl. heavy tails), loss, an optional extra
delay over time (one-way flaps, bufferbloat episodes) and both share an optional route change.
Replies can be scripted to arrive corrupt. All randomness comes from one seeded numpy Generator,
so a scenario is a fixed trace.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .estimator import Sample
from .pll import DisciplinedClock, PllConfig

Jitter = Callable[[np.random.Generator], float]
Breakpoints = tuple[tuple[float, float], ...]  # (true time, added delay), linear in between


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
    extra: Breakpoints = ()  # added delay over true time: 0 outside the breakpoints' span
    _in_burst: bool = field(default=False, repr=False)

    def extra_at(self, t: float) -> float:
        return extra_at(self.extra, t)

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


def extra_at(points: Breakpoints, t: float) -> float:
    """Piecewise-linear added delay at true time `t` (0 before the first and after the last point;
    two points at one instant make a step)."""
    if not points or t < points[0][0] or t >= points[-1][0]:
        return 0.0
    for (ta, da), (tb, db) in itertools.pairwise(points):
        if ta <= t < tb:
            return da + (db - da) * (t - ta) / (tb - ta)
    return 0.0


def flap(start: float, end: float, period: float, add: float) -> Breakpoints:
    """A route that flaps: `add` more delay for the second half of every `period`."""
    pts: list[tuple[float, float]] = []
    t = start
    while t < end:
        hi = min(t + period / 2, end)
        lo = min(t + period, end)
        pts += [(hi, 0.0), (hi, add), (lo, add), (lo, 0.0)]
        t += period
    return tuple(pts)


def episode(start: float, rise: float, hold: float, fall: float, add: float) -> Breakpoints:
    """Bufferbloat: the queue fills over `rise` s to `add`, stays `hold` s, drains over `fall` s."""
    return ((start, 0.0), (start + rise, add), (start + rise + hold, add), (start + rise + hold + fall, 0.0))


@dataclass
class Link:
    up: Direction  # client → server
    down: Direction  # server → client
    route_change_at: float | None = None  # true time at which ...
    route_change_add: float = 0.0  # ... both directions get this much slower
    outages: Breakpoints = ()  # (true time, duration): every packet sent in it is lost

    def down_at(self, t: float) -> bool:
        return any(at <= t < at + d for at, d in self.outages)


@dataclass
class Oscillator:
    """Local clock = true time + offset + skew·t + ramp + wander (random walk in frequency, per
    1 s), minus the time it stood still while suspended, plus its steps."""

    offset: float
    skew: float  # dimensionless: 150e-6 = +150 ppm
    wander: float = 0.0  # frequency random-walk step (dimensionless per √s)
    seed: int = 0
    ramp: tuple[float, float, float] | None = None  # (from, to, skew change per s): thermal drift
    freezes: Breakpoints = ()  # (true time, duration): suspended, the clock stands still
    steps: Breakpoints = ()  # (true time, amount): the clock is set forward (+) or back (-)
    _freq_walk: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed + 7919)
        steps = rng.normal(0.0, self.wander, 4096) if self.wander else np.zeros(4096)
        self._freq_walk = np.concatenate([[0.0], np.cumsum(steps)])  # extra freq during second k
        self._phase_walk = np.concatenate([[0.0], np.cumsum(self._freq_walk[:-1])])

    def local(self, t: float) -> float:
        k = min(int(t), len(self._freq_walk) - 2)
        extra = self._phase_walk[k] + self._freq_walk[k] * (t - k) if self.wander else 0.0
        if self.ramp is not None:
            a, b, rate = self.ramp
            inside = min(max(t, a), b) - a
            extra += 0.5 * rate * inside**2 + rate * (b - a) * max(t - b, 0.0)
        for at, d in self.freezes:
            if t > at:
                extra -= min(t - at, d)
        for at, amount in self.steps:
            if t >= at:
                extra += amount
        return t + self.offset + self.skew * t + extra

    def wake_time(self, t: float) -> float | None:
        """If the device is suspended at true time `t`, when it wakes; else None."""
        for at, d in self.freezes:
            if at <= t < at + d:
                return at + d
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "offset": self.offset,
            "skew": self.skew,
            "ramp": list(self.ramp) if self.ramp else None,
            "freezes": [list(f) for f in self.freezes],
            "steps": [list(x) for x in self.steps],
        }


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
        if link.outages and link.down_at(t):
            return None
        if delay is not None and link.route_change_at is not None and t >= link.route_change_at:
            delay += link.route_change_add
        if delay is not None:
            delay += (link.up if direction == "up" else link.down).extra_at(t)
        return delay

    def to_json(self) -> dict[str, object]:
        link = self.link
        return {
            "up": self.up,
            "down": self.down,
            "routeChangeAt": link.route_change_at,
            "routeChangeAdd": link.route_change_add,
            "extraUp": [list(p) for p in link.up.extra],
            "extraDown": [list(p) for p in link.down.extra],
            "outages": [list(p) for p in link.outages],
        }


Corruption = tuple[float, str, float]  # (from true time, kind, value): the next reply is corrupt


def corrupt(kind: str, value: float, t1: float, t2: float) -> tuple[float, float]:
    """A reply's server stamps as a broken or hostile server (or a middlebox) might send them:
    `shift` both by `value` s, `inf`/`nan` in t1, `swap` (t1 after t2 by `value`), `hold` (t2
    later than the reply left by `value`: an absurd processing time)."""
    if kind == "shift":
        return t1 + value, t2 + value
    if kind == "inf":
        return float("inf"), t2
    if kind == "nan":
        return t1, float("nan")
    if kind == "swap":
        return t2 + value, t2
    if kind == "hold":
        return t1, t2 + value
    raise ValueError(kind)


@dataclass(frozen=True)
class Scenario:
    name: str
    link: Link
    duration: float = 300.0
    offset: float = 3.0
    skew: float = 150e-6
    wander: float = 0.0
    ramp: tuple[float, float, float] | None = None
    freezes: Breakpoints = ()
    steps: Breakpoints = ()
    corrupt: tuple[Corruption, ...] = ()
    group: str = "base"  # which family of conditions it belongs to (for the report)

    def oscillator(self, seed: int = 0) -> Oscillator:
        return Oscillator(self.offset, self.skew, self.wander, seed, self.ramp, self.freezes, self.steps)

    @property
    def disruptions(self) -> list[float]:
        """True times at which traffic resumes after a discontinuity (wake-ups and steps)."""
        return sorted([a + d for a, d in self.freezes] + [a for a, _ in self.steps])


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


def stress_scenarios() -> dict[str, Scenario]:
    """Conditions people live in (issue #8), each seeded and reproducible: a device that
    sleeps, clocks that are set, cheap crystals and thermal drift, one-way congestion, outages,
    corrupt replies. The path is a home connection (20 ms each way, light queueing) unless the
    scenario is about the path."""
    ms = 1e-3

    def home(extra_up: Breakpoints = (), extra_down: Breakpoints = ()) -> Link:
        return Link(
            Direction(20 * ms, bounded_pareto_jitter(1 * ms, 10 * ms), 0.002, extra=extra_up),
            Direction(20 * ms, bounded_pareto_jitter(0.5 * ms, 10 * ms), 0.002, extra=extra_down),
        )

    mobile = scenarios()["mobile"].link
    out = [
        Scenario("suspend-60s", home(), 300.0, freezes=((100.0, 60.0),), group="discontinuity"),
        Scenario("suspend-1h", home(), 3900.0, freezes=((100.0, 3600.0),), group="discontinuity"),
        Scenario("suspend-mobile", mobile, 300.0, freezes=((100.0, 30.0),), group="discontinuity"),
        Scenario("step+60s", home(), 300.0, steps=((100.0, 60.0),), group="discontinuity"),
        Scenario("step-60s", home(), 300.0, steps=((100.0, -60.0),), group="discontinuity"),
        Scenario("step+1s-lan", scenarios()["lan"].link, 200.0, steps=((100.0, 1.0),), group="discontinuity"),
        Scenario("ppm+500", home(), 300.0, skew=500e-6, group="skew"),
        Scenario("ppm-500", home(), 300.0, skew=-500e-6, group="skew"),
        Scenario("skew-ramp", home(), 420.0, ramp=(60.0, 360.0, 100e-6 / 300.0), group="skew"),
        Scenario(
            "ramp-500-mobile", mobile, 420.0, skew=-500e-6, ramp=(60.0, 360.0, -100e-6 / 300.0), group="skew"
        ),
        Scenario("up-flap", home(flap(60.0, 240.0, 20.0, 60 * ms)), 300.0, group="one-way"),
        Scenario("down-flap", home(extra_down=flap(60.0, 240.0, 20.0, 60 * ms)), 300.0, group="one-way"),
        Scenario("up-flap-fast", home(flap(60.0, 240.0, 3.0, 60 * ms)), 300.0, group="one-way"),
        Scenario("up-bloat", home(episode(100.0, 10.0, 40.0, 10.0, 500 * ms)), 300.0, group="one-way"),
        Scenario(
            "down-bloat", home(extra_down=episode(100.0, 10.0, 40.0, 10.0, 500 * ms)), 300.0, group="one-way"
        ),
        Scenario("up-ramp", home(episode(80.0, 25.0, 10.0, 25.0, 300 * ms)), 300.0, group="one-way"),
        Scenario(
            "down-bloat-mobile",
            replace(
                mobile,
                route_change_at=None,
                down=replace(mobile.down, extra=episode(100.0, 5.0, 50.0, 5.0, 0.4)),
            ),
            300.0,
            group="one-way",
        ),
        # Beyond what two-way timing can resolve: congested for longer than the window (120 s).
        Scenario("up-ramp-long", home(episode(60.0, 90.0, 0.0, 90.0, 300 * ms)), 300.0, group="limit"),
        Scenario("outage-120s", replace(home(), outages=((100.0, 120.0),)), 300.0, group="outage"),
        Scenario(
            "corrupt",
            scenarios()["lan"].link,
            200.0,
            corrupt=(
                (30.0, "shift", 1.0),
                (50.0, "shift", -1.0),
                (70.0, "inf", 0.0),
                (90.0, "nan", 0.0),
                (110.0, "swap", 0.5),
                (130.0, "hold", 10.0),
                (150.0, "shift", 86400.0),
            ),
            group="corrupt",
        ),
        Scenario(
            "corrupt-burst",
            home(),
            200.0,
            corrupt=(
                (60.0, "shift", 0.3),
                (60.0, "shift", 0.3),
                (120.0, "shift", -5.0),
                (120.0, "shift", 3.0),
            ),
            group="corrupt",
        ),
    ]
    return {sc.name: sc for sc in out}


@dataclass
class ClockTrace:
    t: np.ndarray  # true time of each evaluation
    error: np.ndarray  # network time - true time (NaN before the first estimate and while asleep)
    locked: np.ndarray  # bool
    probes: int
    samples: int
    monotonic_violations: int
    bound: np.ndarray = field(default_factory=lambda: np.empty(0))  # the clock's own error bound


def settle_time(t: np.ndarray, err: np.ndarray, bound: float, start: float | None = None) -> float:
    """First time in `t` after which |err| stays within `bound` (inf if never; `start`, default
    t[0], if it always was). NaN (no estimate yet) counts as outside."""
    bad = np.flatnonzero(~(np.abs(err) <= bound))
    if not bad.size:
        return float(t[0]) if start is None else start
    return float(t[bad[-1] + 1]) if bad[-1] + 1 < t.size else float("inf")


def simulate_clock(
    scenario: Scenario,
    seed: int = 1,
    config: PllConfig | None = None,
    eval_dt: float = 0.01,
    processing: float = 20e-6,
    clock: DisciplinedClock | None = None,
    trace: PacketTrace | None = None,
) -> ClockTrace:
    """Run one client's exchanges against the true server clock; sample the error on a grid.

    The grid reads the clock as an application would (`DisciplinedClock.read`, never backwards).
    While the device is suspended nothing is sent, replies wait until it wakes, and the grid
    records NaN.
    """
    packets = trace or PacketTrace(scenario.link, seed)
    osc = scenario.oscillator(seed)
    dc = clock or DisciplinedClock(config)
    corruptions = sorted(scenario.corrupt)
    events: list[tuple[float, int, str, tuple[float, ...]]] = []  # (true time, tiebreak, kind, data)
    counter = 0
    heapq.heappush(events, (0.0, counter, "probe", ()))
    n_grid = int(scenario.duration / eval_dt)
    grid_t = np.arange(n_grid) * eval_dt
    err = np.full(n_grid, np.nan)
    bound = np.full(n_grid, np.nan)
    locked = np.zeros(n_grid, dtype=bool)
    gi = 0
    probes = samples = 0
    last_net = -np.inf
    violations = 0

    def grid_until(te: float) -> None:
        nonlocal gi, last_net, violations
        while gi < n_grid and grid_t[gi] < te:
            tg = float(grid_t[gi])
            if dc.started and osc.wake_time(tg) is None:
                local = osc.local(tg)
                net = dc.read(local)
                err[gi] = net - tg
                bound[gi] = dc.error_at(local)
                locked[gi] = dc.locked
                if net <= last_net:
                    violations += 1
                last_net = net
            gi += 1

    while events:
        te, _, kind, data = heapq.heappop(events)
        if te >= scenario.duration:
            break
        grid_until(te)
        wake = osc.wake_time(te)
        if kind == "probe":
            counter += 1
            if wake is not None:  # asleep: the timer fires when the device wakes
                heapq.heappush(events, (wake, counter, "probe", ()))
                continue
            probes += 1
            t0 = osc.local(te)
            up = packets.next("up", te)
            if up is not None:
                t1 = te + up
                t2 = t1 + processing
                down = packets.next("down", t2)
                if down is not None:
                    s1, s2 = t1, t2
                    if corruptions and corruptions[0][0] <= t2:
                        _, how, value = corruptions.pop(0)
                        s1, s2 = corrupt(how, value, t1, t2)
                    counter += 1
                    heapq.heappush(events, (t2 + down, counter, "reply", (t0, s1, s2)))
            heapq.heappush(events, (te + dc.next_probe_interval(), counter, "probe", ()))
        elif wake is not None:
            # Asleep: the reply waits in the OS's buffers and is read on waking, stamped with the
            # local clock then. Sent before the nap, read after it: such an exchange straddles
            # the jump and its round trip reads short (or negative).
            counter += 1
            heapq.heappush(events, (wake, counter, "reply", data))
        else:
            t0, t1, t2 = data
            local = osc.local(te)
            before = dc.read(local) if dc.started else None
            dc.add_sample(Sample(t0, t1, t2, local))
            samples += 1
            if before is not None and dc.read(local) < before:
                violations += 1  # a backwards step at the update instant
    grid_until(np.inf)
    return ClockTrace(grid_t, err, locked, probes, samples, violations, bound)
