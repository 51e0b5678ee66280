"""Applies a session's updates at network time: state at `at + D`, control at `at`.

The pure parts (JitterBuffer, Scheduler) decide what is due; this task only sleeps until the
next due network time, mapped onto the local clock through the disciplined network clock, and
re-plans whenever something earlier arrives. Handlers see each change at its playout instant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.messages import ControlOut, StateOut
from ..timing import Item, JitterBuffer, Scheduler

if TYPE_CHECKING:
    from .client import Client

MAX_SLEEP = 0.25  # re-plan at least this often: the clock's slew moves local deadlines a little


@dataclass(frozen=True, slots=True)
class Applied:
    """One change as the engine applied it: `due` is the intended network time, `network` and
    `local` the network and local clock readings when it actually ran, `late` if it was late."""

    kind: str  # "state" | "control"
    due: float
    network: float
    local: float
    late: bool
    msg: StateOut | ControlOut


Handler = Callable[[Applied], None]


class Playout:
    def __init__(self, client: Client, delay: float, log_size: int = 10_000):
        self.client = client
        self.buffer = JitterBuffer(delay)
        self.scheduler = Scheduler(client.network.to_local)
        self.values: dict[str, Any] = {}  # the state as applied so far (flat paths)
        self.log: deque[Applied] = deque(maxlen=log_size)
        self.handlers: list[Handler] = []
        self._kick = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def seed(self, values: dict[str, Any]) -> None:
        """The snapshot on join applies at once: it is the present, not a future change."""
        self.values.update(values)

    def reseed(self, values: dict[str, Any]) -> None:
        """A rejoin's snapshot replaces the applied view (paths deleted meanwhile go too)."""
        self.values.clear()
        self.values.update(values)

    def on_state(self, msg: StateOut, arrival_network: float) -> None:
        item = Item(msg.at, msg.sender, msg.v, tuple(msg.set), msg)
        for late in self.buffer.push(item, arrival_network):
            self._apply("state", late.at + self.buffer.delay, late.payload, late=True)
        self._kick.set()

    def on_control(self, msg: ControlOut) -> None:
        self.scheduler.schedule(msg.at, msg)
        self._kick.set()

    def close(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        client = self.client
        while True:
            due = [t for t in (self.buffer.next_due(), self.scheduler.next_due()) if t is not None]
            if not due:
                await self._kick.wait()
                self._kick.clear()
                continue
            wait = client.network.to_local(min(due)) - client.clock()
            if wait > 0:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), min(wait, MAX_SLEEP))
                continue
            now = client.network_time()
            # One timeline: what is due now goes out in due order, state before control on a tie.
            due_now: list[tuple[float, int, str, Any]] = [
                (item.at + self.buffer.delay, 0, "state", item.payload) for item in self.buffer.pop_due(now)
            ]
            due_now += [(at, 1, "control", msg) for at, msg in self.scheduler.pop_due(now)]
            due_now.sort(key=lambda d: (d[0], d[1]))  # stable: each kind keeps its own order
            for at, _, kind, msg in due_now:
                self._apply(kind, at, msg, late=False)

    def _apply(self, kind: str, due: float, msg: Any, late: bool) -> None:
        client = self.client
        local = client.clock()
        if kind == "state":
            for path, value in msg.set.items():
                if value is None:
                    self.values.pop(path, None)
                else:
                    self.values[path] = value
        elif msg.event == "playout_delay":
            self.buffer.set_delay(float(msg.payload["delay"]))
        record = Applied(kind, due, client.network.to_network(local), local, late, msg)
        self.log.append(record)
        for handler in self.handlers:
            handler(record)
