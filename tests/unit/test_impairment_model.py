"""The impairment model: seeded, FIFO for streams, drops and reorders only datagrams."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from collective_sync.netem import Impairment, ImpairmentModel, ImpairProxy


def test_stream_release_is_delayed_fifo_and_loss_means_retransmission() -> None:
    model = ImpairmentModel(Impairment(delay=0.02, jitter=0.01, loss=0.1, retransmit=0.2), seed=3)
    arrivals = np.arange(0, 10, 0.01)
    releases = [model.stream_release(t) for t in arrivals]
    assert all(b >= a for a, b in itertools.pairwise(releases))  # byte order kept
    assert min(r - t for r, t in zip(releases, arrivals, strict=True)) >= 0.02
    assert max(r - t for r, t in zip(releases, arrivals, strict=True)) >= 0.2  # a retransmission


def test_datagrams_are_lost_and_reordered_at_the_configured_rates() -> None:
    model = ImpairmentModel(Impairment(delay=0.01, loss=0.2, reorder=0.1, reorder_gap=0.05), seed=5)
    arrivals = np.arange(0, 50, 0.005)
    releases = [model.datagram_release(t) for t in arrivals]
    lost = sum(r is None for r in releases) / len(releases)
    assert lost == pytest.approx(0.2, abs=0.02)
    kept = [r for r in releases if r is not None]
    inversions = sum(b < a for a, b in itertools.pairwise(kept))
    assert inversions > 0.05 * len(kept)


def test_same_seed_same_fate() -> None:
    spec = Impairment(delay=0.01, jitter=0.02, loss=0.3)
    a = [ImpairmentModel(spec, seed=9).datagram_release(1.0) for _ in range(1)]
    b = [ImpairmentModel(spec, seed=9).datagram_release(1.0) for _ in range(1)]
    assert a == b


def test_only_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ImpairProxy("10.0.0.1", 80)
