"""The GAA engine: a torus-helix geometry drives a bank of harmonics in two polarity channels.

Phase-coherent by construction: the output is a pure function of network time and of the
session's state timeline, so two participants who joined at different moments render the same
samples. Three choices make that true:

- Every parameter change starts at a network instant T (the playout time everyone shares) and
  ramps linearly for RAMP seconds: no clicks, and the same curve everywhere.
- Oscillator phase comes from a cycle count of the base frequency, anchored in the state itself
  (`oscillators.cycleRef` = {at, cycles, from}): whoever changes the base frequency also writes
  the count at that instant, so a late joiner gets the anchor with the snapshot.
- The low-pass cutoff is applied as a per-harmonic gain (a first-order response evaluated at each
  harmonic's frequency), not as a filter with memory that would depend on when rendering began.

This module is the reference renderer (numpy); web/gaa/engine.js is the same engine for Web
Audio, checked against it sample by sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RAMP = 0.05  # seconds every change takes
MAX_HARMONICS = 8
F_MIN, F_MAX = 40.0, 2000.0  # base frequency range (safety)
F_CEILING = 8000.0  # no harmonic above this (safety, and well below Nyquist at 44.1/48 kHz)
LEVEL = 0.25  # master level before the limiter; the output never exceeds LEVEL * 1.0

DEFAULT_BASE = 220.0
DEFAULTS: dict[str, float] = {
    "oscillators.cutoff": 2000.0,
    "geometry.R": 1.0,
    "geometry.r": 0.3,
    "geometry.n": 3.0,
    "geometry.phi0": 0.0,
    "geometry.omega": 0.5,
    "polarity.balance": 0.0,
    "polarity.light.amplitude": 0.8,
    "polarity.light.phase": 0.0,
    "polarity.light.enabled": 1.0,
    "polarity.dark.amplitude": 0.6,
    "polarity.dark.phase": 0.0,
    "polarity.dark.enabled": 1.0,
}
DEFAULT_HARMONICS = (1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14, 0.12)


@dataclass
class Ramp:
    """A scalar moving linearly from `start` to `end` over RAMP seconds from network time `at`."""

    start: float
    end: float
    at: float = -math.inf

    def value(self, t: np.ndarray | float) -> np.ndarray | float:
        x = np.clip((np.asarray(t) - self.at) / RAMP, 0.0, 1.0)
        return self.start + (self.end - self.start) * x

    def moved(self, t: float, end: float) -> Ramp:
        return Ramp(float(self.value(t)), end, t)


def _clamp(name: str, value: float) -> float:
    if name == "oscillators.base":
        return min(F_MAX, max(F_MIN, value))
    if name == "oscillators.cutoff":
        return min(F_CEILING, max(F_MIN, value))
    if name == "polarity.balance":
        return min(1.0, max(-1.0, value))
    if name.endswith(".amplitude"):
        return min(1.0, max(0.0, value))
    return value


@dataclass
class CycleRef:
    """Cycle count `cycles` of the base oscillator at network time `at`, where a ramp from base
    frequency `start` to `end` begins (the phase anchor everyone shares)."""

    at: float = 0.0
    cycles: float = 0.0
    start: float = DEFAULT_BASE
    end: float = DEFAULT_BASE

    def cycles_at(self, t: np.ndarray | float) -> np.ndarray | float:
        # Before `at` the count runs back at the start frequency: the same phase the previous
        # anchor gives there, so a change known ahead of its instant (audio is scheduled ahead)
        # leaves the samples before it untouched.
        dt = np.asarray(t, dtype=float) - self.at
        before = np.minimum(dt, 0.0)
        after = np.maximum(dt, 0.0)
        inside = np.minimum(after, RAMP)
        ramped = self.start * inside + (self.end - self.start) * inside**2 / (2 * RAMP)
        return self.cycles + self.start * before + ramped + self.end * (after - inside)

    def frequency(self, t: np.ndarray | float) -> np.ndarray | float:
        return np.interp(t, [self.at, self.at + RAMP], [self.start, self.end])

    def to_state(self) -> dict[str, float]:
        return {"at": self.at, "cycles": self.cycles, "start": self.start, "end": self.end}


@dataclass
class Engine:
    """Parameters as ramps, fed with state changes at their network instants."""

    params: dict[str, Ramp] = field(default_factory=lambda: {k: Ramp(v, v) for k, v in DEFAULTS.items()})
    harmonics: list[Ramp] = field(default_factory=lambda: [Ramp(a, a) for a in DEFAULT_HARMONICS])
    cycle_ref: CycleRef = field(default_factory=CycleRef)

    def apply(self, changes: Mapping[str, Any], at: float) -> None:
        """Apply state paths changed at network time `at` (snapshot values too: at = their time)."""
        ref = changes.get("oscillators.cycleRef")
        for path, value in changes.items():
            if path == "oscillators.harmonics" and isinstance(value, list):
                amps = [min(1.0, max(0.0, float(a))) for a in value[:MAX_HARMONICS]]
                amps += [0.0] * (MAX_HARMONICS - len(amps))
                self.harmonics = [h.moved(at, a) for h, a in zip(self.harmonics, amps, strict=True)]
            elif path == "oscillators.base" and isinstance(value, int | float):
                if isinstance(ref, Mapping):  # the anchor written with the change: everyone agrees
                    self.cycle_ref = CycleRef(
                        float(ref["at"]),
                        float(ref["cycles"]),
                        _clamp(path, float(ref["start"])),
                        _clamp(path, float(ref["end"])),
                    )
                else:
                    self.cycle_ref = self.next_cycle_ref(at, _clamp(path, float(value)))
            elif path in self.params and isinstance(value, int | float | bool):
                self.params[path] = self.params[path].moved(at, _clamp(path, float(value)))

    def next_cycle_ref(self, at: float, new_base: float) -> CycleRef:
        """The anchor a leader writes with a base-frequency change taking effect at `at`."""
        ref = self.cycle_ref
        # Only the fractional cycle matters to integer harmonics; keeping the count small keeps
        # every later phase exact in double precision (an epoch-long count would not be).
        return CycleRef(at, float(np.mod(ref.cycles_at(at), 1.0)), float(ref.frequency(at)), new_base)

    def render(self, t0: float, frames: int, sample_rate: float) -> np.ndarray:
        """`frames` samples starting at network time `t0` (float64, within ±LEVEL)."""
        t = t0 + np.arange(frames) / sample_rate
        p = {k: np.asarray(r.value(t)) for k, r in self.params.items()}
        theta = p["geometry.phi0"] + p["geometry.omega"] * t
        ratio = np.clip(
            p["geometry.r"] / np.maximum(p["geometry.R"], 1e-6), 0.0, 1.0
        )  # a torus, not a spindle
        knot = np.cos(p["geometry.n"] * theta)  # where on the torus the helix is: -1 .. 1
        cycles = np.asarray(self.cycle_ref.cycles_at(t))
        base = np.asarray(self.cycle_ref.frequency(t))
        balance = p["polarity.balance"]
        light = p["polarity.light.amplitude"] * p["polarity.light.enabled"] * (1 - balance) / 2
        dark = p["polarity.dark.amplitude"] * p["polarity.dark.enabled"] * (1 + balance) / 2
        out = np.zeros(frames)
        for k, h in enumerate(self.harmonics, start=1):
            f = base * k
            # First-order low-pass response at this harmonic's frequency; harmonics fade out over the
            # last 10 % below the ceiling (a hard cut-off would click when a ramp crosses it).
            gain = np.asarray(h.value(t)) / np.sqrt(1 + (f / p["oscillators.cutoff"]) ** 2)
            gain = gain * np.clip((F_CEILING - f) / (0.1 * F_CEILING), 0.0, 1.0)
            # Odd harmonics in the light channel, even in the dark; the geometry sways them apart.
            sway = 1 + ratio * knot * (1 if k % 2 else -1)
            chan, phase = (light, p["polarity.light.phase"]) if k % 2 else (dark, p["polarity.dark.phase"])
            frac = np.mod(cycles * k, 1.0)
            out += gain * chan * sway * np.sin(2 * np.pi * frac + phase)
        return LEVEL * np.tanh(out / 2)  # soft limiter: |output| < LEVEL whatever the state


def leader_change(engine: Engine, changes: Mapping[str, Any], at: float) -> dict[str, Any]:
    """What a leader sends for `changes` taking effect at `at`: a base-frequency change carries
    the cycle anchor for that instant, so every receiver (and later joiners) keep one phase."""
    out = dict(changes)
    if "oscillators.base" in out:
        new = _clamp("oscillators.base", float(out["oscillators.base"]))
        out["oscillators.cycleRef"] = engine.next_cycle_ref(at, new).to_state()
    return out


def polarity_changes(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The engine paths a `polarity_sync` payload sets, applied at the control's `at`.

    The light and dark channels and their balance drive the two polarity voices; `resonanceMode`
    and `darkEnergyDrift` travel with the message for engines that model them, this compact
    engine does not render them.
    """
    out: dict[str, Any] = {"polarity.balance": float(payload["polarityBalance"])}
    for key, name in (("lightChannel", "light"), ("darkChannel", "dark")):
        channel = payload[key]
        out[f"polarity.{name}.enabled"] = bool(channel["enabled"])
        out[f"polarity.{name}.amplitude"] = float(channel["amplitude"])
        out[f"polarity.{name}.phase"] = float(channel["phase"])
    return out


POLARITY_EXAMPLE = {
    "lightChannel": {"enabled": True, "amplitude": 0.3, "phase": 0.5, "resonanceMode": "harmonic"},
    "darkChannel": {"enabled": True, "amplitude": 0.9, "phase": 2.0, "resonanceMode": "chaotic"},
    "polarityBalance": -0.6,
    "darkEnergyDrift": {"driftRate": 0.01, "expansionFactor": 1.2},
}


def vectors() -> dict[str, Any]:
    """A state timeline and renders of it, for the JavaScript engine's tests (tests/vectors/gaa.json)."""
    engine = Engine()
    t0 = 1_795_000_000.0  # network time: epoch seconds, as in a real session
    steps: list[tuple[float, dict[str, Any]]] = [
        (t0, {"oscillators.base": 196.0, "geometry.omega": 0.8}),
        (t0 + 0.5, {"oscillators.base": 330.0}),
        (t0 + 0.9, {"polarity.balance": 0.7, "oscillators.harmonics": [1, 0.2, 0.6, 0.1]}),
        (t0 + 1.4, {"geometry.omega": 2.0, "oscillators.cutoff": 800.0, "polarity.dark.phase": 1.2}),
        (t0 + 1.8, {"oscillators.base": 5000.0, "polarity.light.enabled": False}),  # clamped
        (t0 + 2.2, polarity_changes(POLARITY_EXAMPLE)),
    ]
    timeline: list[dict[str, Any]] = []
    for at, changes in steps:
        sent = leader_change(engine, changes, at)
        engine.apply(sent, at)
        timeline.append({"at": at, "changes": sent})
    windows = [t0 + 0.49, t0 + 0.52, t0 + 0.93, t0 + 1.5, t0 + 1.81, t0 + 2.22, t0 + 2.5]
    sr, frames = 48000.0, 256
    replay = Engine()
    for step in timeline:
        replay.apply(step["changes"], step["at"])
    return {
        "sampleRate": sr,
        "frames": frames,
        "steps": [{"at": at, "changes": changes} for at, changes in steps],
        "timeline": timeline,
        "polarity": {"payload": POLARITY_EXAMPLE, "changes": polarity_changes(POLARITY_EXAMPLE)},
        "renders": [{"t0": w, "samples": replay.render(w, frames, sr).tolist()} for w in windows],
    }


if __name__ == "__main__":
    import json
    import sys

    with open(sys.argv[1] if len(sys.argv) > 1 else "tests/vectors/gaa.json", "w") as f:
        json.dump(vectors(), f, separators=(",", ":"))
        f.write("\n")
