"""Admission in fake time: at most `budget` of queued work per turn, in order, and a failing job
does not stall the ones behind it."""

from __future__ import annotations

from collections.abc import Callable

from collective_sync.server.admission import Admission


class Loop:
    """A fake event loop: `defer` queues for the next turn; `turn()` runs one."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []
        self.now = 0.0

    def defer(self, fn: Callable[[], None]) -> None:
        self.soon.append(fn)

    def turn(self) -> None:
        due, self.soon = self.soon, []
        for fn in due:
            fn()


def test_work_beyond_the_budget_waits_for_later_turns_in_order() -> None:
    loop = Loop()
    adm = Admission(budget=0.004, defer=loop.defer, clock=lambda: loop.now)
    done: list[int] = []

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            loop.now += 0.001  # each join costs 1 ms
            done.append(i)

        return run

    for i in range(10):
        adm.submit(job(i))
    assert done == []  # nothing runs inside the turn that received it
    loop.turn()
    assert done == [0, 1, 2, 3]
    assert len(adm) == 6
    loop.turn()
    loop.turn()
    assert done == list(range(10))
    assert loop.soon == []  # nothing left scheduled


def test_a_failing_job_does_not_stall_the_queue() -> None:
    loop = Loop()
    adm = Admission(budget=1.0, defer=loop.defer, clock=lambda: loop.now)
    done: list[str] = []
    adm.submit(lambda: done.append("a"))
    adm.submit(lambda: 1 / 0)  # type: ignore[func-returns-value]
    adm.submit(lambda: done.append("c"))
    loop.turn()
    assert done == ["a", "c"]


def test_without_an_event_loop_jobs_run_at_once() -> None:
    adm = Admission(budget=0.001)
    done: list[int] = []
    adm.submit(lambda: done.append(1))
    assert done == [1]


def test_the_budget_grows_with_long_turns_so_joiners_are_not_starved() -> None:
    loop = Loop()
    flush = {"took": 0.0}
    adm = Admission(budget=0.004, defer=loop.defer, clock=lambda: loop.now, turn=lambda: flush["took"])
    done: list[int] = []

    def job() -> None:
        loop.now += 0.001
        done.append(1)

    for _ in range(300):
        adm.submit(job)
    loop.turn()
    assert len(done) == 4  # the fixed budget
    flush["took"] = 0.2  # fan-outs now take 200 ms: joins get half of that per turn
    loop.turn()
    assert len(done) == 4 + 100
