"""The GAA reference engine: phase-coherent for late joiners, click-free, within safety limits."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np

from collective_sync.engine.gaa import (
    F_MAX,
    LEVEL,
    POLARITY_EXAMPLE,
    RAMP,
    Engine,
    leader_change,
    polarity_changes,
    vectors,
)
from collective_sync.protocol.messages import PolaritySync

T0 = 1_795_000_000.0
SR = 48000.0


def session_history() -> tuple[Engine, dict[str, object]]:
    """A leader's engine after a few changes, and the session's state snapshot afterwards."""
    leader = Engine()
    snapshot: dict[str, object] = {}
    for at, changes in [
        (T0, {"oscillators.base": 220.0}),
        (T0 + 3.0, {"oscillators.base": 261.6, "polarity.balance": -0.4}),
        (T0 + 7.5, {"oscillators.base": 392.0, "geometry.omega": 1.5}),
    ]:
        sent = leader_change(leader, changes, at)
        leader.apply(sent, at)
        snapshot.update(sent)
    return leader, snapshot


def test_a_late_joiner_renders_the_same_phase_from_the_snapshot_alone() -> None:
    leader, snapshot = session_history()
    late = Engine()
    joined_at = T0 + 42.0
    late.apply(snapshot, joined_at)  # no history: just the state, applied when it arrives
    start = joined_at + RAMP + 0.001  # once its own ramps from the defaults are over
    a, b = leader.render(start, 4800, SR), late.render(start, 4800, SR)
    assert np.abs(a - b).max() < 1e-9
    # Without the anchor in the snapshot the phase would be arbitrary: it must differ then.
    naive = Engine()
    naive.apply({k: v for k, v in snapshot.items() if k != "oscillators.cycleRef"}, joined_at)
    assert np.abs(leader.render(start, 4800, SR) - naive.render(start, 4800, SR)).max() > 1e-3


def test_changes_ramp_without_clicks() -> None:
    engine = Engine()
    engine.apply(leader_change(engine, {"oscillators.base": 110.0}, T0), T0)
    before = np.abs(np.diff(engine.render(T0 + 1.0, 4800, SR))).max()
    big = {"oscillators.base": 880.0, "polarity.balance": 1.0, "oscillators.harmonics": [0, 0, 0, 1]}
    engine.apply(leader_change(engine, big, T0 + 1.05), T0 + 1.05)
    across = np.abs(np.diff(engine.render(T0 + 1.04, 4800, SR))).max()
    # Across the change the signal moves no faster than the steady tones on either side (a click
    # is a jump of the order of the whole amplitude, 0.1 here, in one sample).
    steady = np.abs(np.diff(engine.render(T0 + 2.0, 4800, SR))).max()
    assert across <= 2 * max(before, steady)
    assert across < 0.05


def test_output_level_and_frequency_are_capped() -> None:
    engine = Engine()
    wild = {
        "oscillators.base": 1e6,
        "oscillators.harmonics": [1] * 20,
        "polarity.light.amplitude": 50,
        "polarity.dark.amplitude": 50,
        "geometry.r": 100.0,
        "oscillators.cutoff": 1e9,
    }
    engine.apply(leader_change(engine, wild, T0), T0)
    assert engine.cycle_ref.end == F_MAX
    assert np.abs(engine.render(T0 + 0.1, 48000, SR)).max() <= LEVEL  # the limiter holds
    quiet = Engine()
    soft = {"oscillators.base": 1e6, "polarity.light.amplitude": 0.1, "polarity.dark.amplitude": 0.1}
    quiet.apply(leader_change(quiet, soft, T0), T0)
    y = quiet.render(T0 + 0.1, 48000, SR)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    assert spectrum[freqs > 8500].max() < 1e-3 * spectrum.max()  # nothing above the ceiling


def test_committed_vectors_match_the_reference() -> None:
    path = Path(__file__).resolve().parents[1] / "vectors" / "gaa.json"
    committed = json.loads(path.read_text())
    fresh = json.loads(json.dumps(vectors()))
    assert committed["timeline"] == fresh["timeline"]
    for a, b in zip(committed["renders"], fresh["renders"], strict=True):
        assert np.abs(np.array(a["samples"]) - np.array(b["samples"])).max() < 1e-12


def test_polarity_sync_moves_the_light_and_dark_voices() -> None:
    msgspec.convert(POLARITY_EXAMPLE, PolaritySync)  # a payload the server accepts as it stands
    engine = Engine()
    engine.apply(leader_change(engine, {"oscillators.base": 200.0}, T0), T0)
    before = engine.render(T0 + 1.0, 4800, SR)
    all_dark = {**POLARITY_EXAMPLE, "polarityBalance": 1.0}
    engine.apply(polarity_changes(all_dark), T0 + 1.5)
    after = engine.render(T0 + 2.0, 4800, SR)
    spectrum = np.abs(np.fft.rfft(after * np.hanning(after.size)))
    freqs = np.fft.rfftfreq(after.size, 1 / SR)
    odd = spectrum[np.abs(freqs - 200.0).argmin()]  # the light voice's fundamental
    even = spectrum[np.abs(freqs - 400.0).argmin()]  # the dark voice's first harmonic
    assert even > 100 * odd  # balance +1: only the dark (even) voice sounds
    assert np.abs(after - before).max() > 0.01
    assert engine.params["polarity.dark.phase"].end == POLARITY_EXAMPLE["darkChannel"]["phase"]


def test_a_change_applied_ahead_of_its_instant_leaves_the_samples_before_it_untouched() -> None:
    # Audio is scheduled ahead: the engine learns of a change before it renders the samples
    # leading up to the change's instant. Those samples must be what they were without it.
    known_late, known_early = Engine(), Engine()
    for engine in (known_late, known_early):
        engine.apply(leader_change(engine, {"oscillators.base": 196.0}, T0), T0)
    at = T0 + 1.0
    change = leader_change(known_early, {"oscillators.base": 330.0, "polarity.balance": 0.8}, at)
    known_early.apply(change, at)
    before = at - 0.1
    a = known_late.render(before, 4800, SR)  # 0.1 s up to the change
    b = known_early.render(before, 4800, SR)
    assert np.abs(a).max() > 0.01
    assert np.abs(a - b).max() < 1e-6
