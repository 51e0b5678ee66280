"""The GC policy: long-lived objects are frozen after a collection of the older generations,
and thawed (and their garbage collected) once as many connections closed as are open."""

from __future__ import annotations

import gc

from collective_sync.server.gcpolicy import GcPolicy


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_a_thaw_collects_what_died_meanwhile() -> None:
    policy = GcPolicy(young=1_000_000, thaw_min=10)
    policy.start()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0  # start-up objects
        live = [Cycle() for _ in range(1000)]
        gc.collect(1)
        assert gc.get_freeze_count() >= frozen + 1000  # survivors of the middle generation
        del live  # now cyclic garbage, but frozen: no collection finds it
        assert gc.collect() < 1000  # frozen: the collector does not see them
        policy.tick(closed_total=5, live=3)  # fewer closed than thaw_min: nothing
        assert policy.thaws == 0
        before = gc.get_freeze_count()
        policy.tick(closed_total=20, live=3)
        assert policy.thaws == 1
        assert gc.get_freeze_count() <= before - 1000  # the dead cycles were collected
    finally:
        policy.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] != 1_000_000
