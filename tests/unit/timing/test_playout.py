"""Jitter buffer and scheduler."""

from __future__ import annotations

from collective_sync.timing import Item, JitterBuffer, Scheduler


def test_released_at_at_plus_delay_in_timestamp_order_with_deterministic_ties() -> None:
    jb = JitterBuffer(delay=0.2)
    items = [
        Item(1.0, "pb", 1, ("a",)),
        Item(1.0, "pa", 7, ("b",)),
        Item(0.9, "pz", 3, ("c",)),
        Item(1.0, "pa", 2, ("d",)),
    ]
    for it in items:
        assert jb.push(it, arrival=1.02) == []
    assert jb.pop_due(1.09) == []
    assert jb.next_due() == 0.9 + 0.2
    assert [(i.at, i.sender, i.seq) for i in jb.pop_due(1.2)] == [
        (0.9, "pz", 3),
        (1.0, "pa", 2),
        (1.0, "pa", 7),
        (1.0, "pb", 1),
    ]
    assert jb.stats.reordered == 1  # 0.9 arrived after 1.0


def test_late_items_apply_if_newest_else_drop() -> None:
    jb = JitterBuffer(delay=0.05)
    jb.push(Item(1.0, "p", 2, ("geometry.R",)), arrival=1.01)
    assert len(jb.pop_due(1.06)) == 1
    # Older value for the same key arrives late: superseded, dropped.
    assert jb.push(Item(0.99, "p", 1, ("geometry.R",)), arrival=1.07) == []
    # Late, but newest for its key: applied at once.
    late = jb.push(Item(1.02, "p", 3, ("geometry.R",)), arrival=1.2)
    assert [i.seq for i in late] == [3]
    s = jb.stats
    assert (s.received, s.late_applied, s.late_dropped, s.applied) == (3, 1, 1, 2)
    assert s.late_ratio == 2 / 3


def test_adaptive_delay_rises_fast_and_falls_slowly() -> None:
    jb = JitterBuffer(delay=0.1)
    t = 0.0
    for k in range(400):  # transit 30 ms with a few 120 ms spikes
        t += 0.02
        transit = 0.12 if k % 50 == 0 else 0.03
        jb.push(Item(t, "p", k, ("k",)), arrival=t + transit)
    high = jb.suggested_delay
    assert 0.12 < high <= 0.2
    for k in range(400, 1900):  # spikes stop: 30 s of steady 30 ms (the window forgets them)
        t += 0.02
        jb.push(Item(t, "p", k, ("k",)), arrival=t + 0.03)
    assert jb.suggested_delay < high  # came down ...
    assert jb.suggested_delay > high - 0.01 * 30.5  # ... at most down_rate x elapsed
    assert jb.delay == 0.1  # the applied delay only changes when the session says so
    jb.set_delay(0.2)
    assert jb.delay == 0.2


def test_scheduler_orders_by_network_time_and_maps_to_local() -> None:
    sched = Scheduler(to_local=lambda net: net - 3.0)
    sched.schedule(10.0, "b")
    sched.schedule(9.5, "a")
    sched.schedule(10.0, "c")
    assert sched.next_local_deadline() == 6.5
    assert sched.pop_due(9.99) == [(9.5, "a")]
    assert sched.pop_due(10.0) == [(10.0, "b"), (10.0, "c")]
    assert len(sched) == 0
