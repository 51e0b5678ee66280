"""A ceremony for recovery tests: a leader streaming controls, participants writing state,
every client recording the controls it received; and the checks that nothing was lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request

from collective_sync.client import Client, ConnectionClosed, ServerError, Session
from collective_sync.protocol.messages import ControlOut


class Ceremony:
    """The clients, what they received, and the leader's acknowledged controls."""

    def __init__(
        self, clients: list[Client], sessions: list[Session], control_every: float, write_every: float
    ):
        self.clients = clients
        self.sessions = sessions
        self.ids = [s.me for s in sessions]
        self.epoch = sessions[0].epoch
        self.control_every = control_every
        self.write_every = write_every
        self.acked: dict[int, int] = {}  # seq -> payload i, as acknowledged to the leader
        self.received: list[list[ControlOut]] = [[] for _ in sessions]
        self.stop = asyncio.Event()
        self.senders: list[asyncio.Task[None]] = []
        self.collectors: list[asyncio.Task[None]] = []

    @property
    def leader(self) -> Session:
        return self.sessions[0]

    def start(self) -> None:
        self.senders = [asyncio.create_task(self._lead())]
        for k, s in enumerate(self.sessions):
            self.collectors.append(asyncio.create_task(self._collect(s, self.received[k])))
            self.senders.append(asyncio.create_task(self._write(s, k)))

    async def _lead(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                seq = await self.leader.control("step", {"i": i})
            except (ConnectionClosed, ServerError, TimeoutError):
                # Not acknowledged: maybe lost, maybe applied (the ack lost on the way). Retried.
                await self.leader.client.wait_for(lambda c: c.ready, 60)
                continue
            self.acked[seq] = i
            i += 1
            await asyncio.sleep(self.control_every)  # pacing, not synchronisation

    async def _write(self, s: Session, k: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            path = "geometry.R" if k == 0 else f"participants.{s.me}.beat"
            try:
                await s.set({path: n})
            except ConnectionClosed:
                await s.client.wait_for(lambda c: c.ready, 60)
            await asyncio.sleep(self.write_every)  # pacing

    @staticmethod
    async def _collect(s: Session, into: list[ControlOut]) -> None:
        async for ev in s.events():
            if isinstance(ev, ControlOut):
                into.append(ev)

    async def until_acked(self, n: int, timeout: float = 30) -> None:
        await self.leader.wait_for(lambda _: len(self.acked) >= n, timeout)

    async def finish(self) -> None:
        """Once every writer's own path holds a value the server accepted (after a crash, what
        they wrote before the last snapshot is gone), stop sending; wait until every client has
        every acknowledged control."""
        for k, s in enumerate(self.sessions):
            path = "geometry.R" if k == 0 else f"participants.{s.me}.beat"
            await s.client.wait_for(lambda _, s=s, path=path: path in s.values, 30)  # type: ignore[misc]
        self.stop.set()
        await asyncio.gather(*self.senders)
        last = max(self.acked)
        for s in self.sessions:
            await s.client.wait_for(lambda _, s=s: s.seq >= last, 30)  # type: ignore[misc]
        for t in self.collectors:
            t.cancel()

    async def close(self) -> None:
        for t in [*self.senders, *self.collectors]:
            t.cancel()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


async def ceremony(
    url: str, followers: int, control_every: float = 0.0, write_every: float = 0.02, start: bool = True
) -> Ceremony:
    clients = [await Client.connect(url, discipline=False) for _ in range(1 + followers)]
    lead = await clients[0].create("Leader")
    sessions = [lead] + [await c.join(lead.id, f"F{k}") for k, c in enumerate(clients[1:], 1)]
    c = Ceremony(clients, sessions, control_every, write_every)
    if start:
        c.start()
    return c


def healthz(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def connections_settle_at(port: int, n: int, timeout: float = 10) -> None:
    """The server counts `n` connections (a connection cut a moment ago may still be counted
    until the server has read its reset): one socket per client, no leak."""
    deadline = time.monotonic() + timeout
    while (count := (await asyncio.to_thread(healthz, port))["connections"]) != n:
        assert time.monotonic() < deadline, f"{count} connections, expected {n}"
        await asyncio.sleep(0.1)  # polling the server's own count, which has no event to wait on


async def all_back(c: Ceremony, timeout: float = 30) -> float:
    """Wait for every client to have reconnected and rejoined; returns how long it took."""
    t0 = time.monotonic()
    for client in c.clients:
        await client.wait_for(lambda cl: cl.ready, timeout)
    return time.monotonic() - t0


def check_controls(c: Ceremony, *, exact: bool) -> None:
    """Every client has every control once, in seq order, the same log everywhere, holding every
    acknowledged control. `exact`: also nothing that was not acknowledged (no retried control
    was applied twice), which holds when no ack could be lost on the way (a graceful restart)."""
    last = max(c.acked)
    logs = [[(m.seq, m.payload["i"]) for m in r] for r in c.received]
    for log in logs:
        assert [seq for seq, _ in log] == list(range(1, last + 1)), "a control was lost or duplicated"
        assert log == logs[0], "clients disagree on the control log"
    seen = dict(logs[0])
    for seq, i in c.acked.items():
        assert seen[seq] == i, f"acknowledged control {seq} lost"
    if exact:
        assert set(seen) == set(c.acked)


async def check_state(c: Ceremony, url: str) -> None:
    """Everyone converges to the server's document (a fresh observer reads it)."""
    async with await Client.connect(url, discipline=False) as probe:
        view = await probe.join(c.leader.id, "probe", role="observer")
        every = [*c.sessions, view]
        deadline = time.monotonic() + 20
        while any(s.values != view.values for s in every):
            assert time.monotonic() < deadline, "state did not converge"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.changed.wait(), 1)
        assert view.values["geometry.R"] > 0
        for s in c.sessions[1:]:
            assert view.values[f"participants.{s.me}.beat"] > 0
