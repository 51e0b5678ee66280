"""Asyncio client SDK: one WebSocket connection, any number of joined sessions.

Built on picows callbacks rather than a reader task: frames are decoded and applied in the
transport callback, and the arrival time of a time-exchange reply is read right there, which
keeps the client's share of round-trip jitter small.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ..protocol.codec import decode_server, encode_client
from ..protocol.messages import (
    Ack,
    ClientMessage,
    Create,
    Error,
    Join,
    Joined,
    JoinRole,
    Left,
    SessionSettings,
    TimeReply,
    TimeRequest,
    Welcome,
)
from ..timing import ClockEvent, DisciplinedClock, Sample
from .errors import ConnectionClosed, ServerError
from .session import Session
from .signal import Changed

Clock = Callable[[], float]


def steady_clock() -> Clock:
    """The default local clock: on the wall clock's scale when created, then advanced by a clock
    that is never set (CLOCK_BOOTTIME on Linux, which keeps counting through suspend; otherwise
    time.monotonic). A wall clock that NTP or a user sets would jump network time with it."""
    source = getattr(time, "CLOCK_BOOTTIME", None)
    tick: Clock = (lambda: time.clock_gettime(source)) if source is not None else time.monotonic
    base = time.time() - tick()
    return lambda: base + tick()


# One four-timestamp exchange (t0/t3 local, t1/t2 server), with `offset` and `delay`.
TimeSample = Sample


class _Listener(WSListener):
    def __init__(self, client: Client):
        self.client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        arrival = self.client.clock()
        if frame.msg_type is WSMsgType.TEXT or frame.msg_type is WSMsgType.BINARY:
            self.client._on_frame(frame.get_payload_as_bytes(), arrival)
        elif frame.msg_type is WSMsgType.CLOSE:
            self.client._close_info = (frame.get_close_code(), frame.get_close_reason())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client._on_disconnected()


class Client:
    """Connect with `await Client.connect(url)`; use as an async context manager to close."""

    def __init__(self, clock: Clock | None = None, request_timeout: float = 10.0):
        self.clock = clock or steady_clock()  # injectable local clock (tests offset and skew it)
        self.request_timeout = request_timeout
        self.welcome: Welcome | None = None
        self.sessions: dict[str, Session] = {}
        self.errors: deque[Error] = deque(maxlen=1000)  # errors with no request or session
        self.time_samples: deque[TimeSample] = deque(maxlen=32)
        self.exchanges = 0  # time exchanges completed
        self.network = DisciplinedClock()  # local clock -> network (server) time, PLL-disciplined
        self.clock_events: deque[ClockEvent] = deque(maxlen=100)  # steps, holds, re-acquisitions
        self._wall_gap: float | None = None  # wall clock - local clock at the last probe
        self._probe_task: asyncio.Task[None] | None = None
        self._transport: WSTransport | None = None
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._time_pending: dict[float, asyncio.Future[TimeSample]] = {}
        self._welcome: asyncio.Future[Welcome] | None = None
        self._closed: asyncio.Future[ConnectionClosed] | None = None
        self._close_info: tuple[Any, str] | None = None
        self.changed = Changed()  # notified after every frame and on disconnect

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        timeout: float = 10.0,
        discipline: bool = True,
        lock_timeout: float = 3.0,
    ) -> Client:
        """Open the connection and wait for `welcome`. With `discipline` (the default) a
        background task keeps exchanging time with the server (a burst now, then adaptively)
        and `connect` waits up to `lock_timeout` for the network clock to lock; on a path too
        noisy for that it returns anyway (`client.network.locked` tells, and it keeps trying)."""
        self = cls(clock, timeout)
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._closed = loop.create_future()
        async with asyncio.timeout(timeout):
            self._transport, _ = await picows.ws_connect(lambda: _Listener(self), url)
            self.welcome = await self._welcome
        if discipline:
            self._probe_task = loop.create_task(self._probe_loop())
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda c: c.network.locked, lock_timeout)
        return self

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- sessions --------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        *,
        session_id: str | None = None,
        public: bool = False,
        ceremony_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        playout_delay: float = 0.15,
    ) -> Session:
        """Create a session and join it as its leader; `playout_delay` is the session's D."""
        settings = SessionSettings(
            session_id=session_id, public=public, ceremony_type=ceremony_type, playout_delay=playout_delay
        )
        session: Session = await self.request(Create(name=name, settings=settings, meta=dict(meta or {})))
        return session

    async def join(
        self,
        session_id: str,
        name: str,
        *,
        role: JoinRole = "participant",
        meta: Mapping[str, Any] | None = None,
        resume: str | None = None,
        last_seq: int | None = None,
    ) -> Session:
        """Join by id; `resume` (a previous `Session.token`) reclaims the same participant."""
        session: Session = await self.request(
            Join(
                session=session_id,
                name=name,
                role=role,
                meta=dict(meta or {}),
                resume=resume,
                last_seq=last_seq,
            )
        )
        return session

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    # --- time ------------------------------------------------------------------------------

    async def time_exchange(self) -> TimeSample:
        """One NTP-style exchange over the socket."""
        t0 = self.clock()
        fut: asyncio.Future[TimeSample] = asyncio.get_running_loop().create_future()
        self._time_pending[t0] = fut
        self.send(TimeRequest(t0=t0))
        try:
            async with asyncio.timeout(self.request_timeout):
                sample = await fut
        finally:
            self._time_pending.pop(t0, None)
        self.time_samples.append(sample)
        self.exchanges += 1
        self.network.add_sample(sample)
        self._take_clock_events()
        return sample

    def _take_clock_events(self) -> None:
        events = self.network.drain_events()
        if events:
            self.clock_events.extend(events)
            self.changed.notify()

    async def sync_time(self, samples: int = 8) -> TimeSample:
        """Take `samples` exchanges; returns the one with the smallest delay (round trip)."""
        for _ in range(samples):
            await self.time_exchange()
        return self.best_sample()

    def best_sample(self) -> TimeSample:
        return min(self.time_samples, key=lambda s: s.delay)

    def network_time(self, local: float | None = None) -> float:
        """Network (server) time now, or at local clock reading `local`: smooth and monotonic
        once locked. Before any exchange it is the local clock."""
        if local is not None:
            return self.network.to_network(local) if self.network.started else local
        t = self.clock()
        if not self.network.started:
            return t
        net = self.network.read(t)  # never backwards, even if the local clock is
        if self.network.events:
            self._take_clock_events()
        return net

    server_time = network_time

    async def _probe_loop(self) -> None:
        """Time exchanges at the interval the disciplined clock asks for (burst, then slower)."""
        while not self.closed:
            self._check_wall_clock()
            try:
                await asyncio.wait_for(self.time_exchange(), 2.0)
            except TimeoutError:
                pass  # lost on the way: the next probe will do
            except ConnectionError:
                return
            await asyncio.sleep(self.network.next_probe_interval())

    def _check_wall_clock(self) -> None:
        """The wall clock and the local one drifting apart by more than a crystal can (0.5 s
        between probes) means one of them jumped: a suspension a non-counting clock missed, or
        the local clock was set. Tell the network clock to probe fast and find out."""
        local = self.clock()
        gap = time.time() - local
        if self._wall_gap is not None and abs(gap - self._wall_gap) > 0.5:
            self.network.suspect(local)
        self._wall_gap = gap

    async def wait_for(self, predicate: Callable[[Client], bool], timeout: float = 10.0) -> None:
        """Return once `predicate(self)` holds; re-checked after every frame (e.g. on `errors`)."""
        await self.changed.until(lambda: predicate(self), self.raise_if_closed, timeout)

    # --- plumbing --------------------------------------------------------------------------

    def send(self, msg: ClientMessage) -> None:
        self.raise_if_closed()
        assert self._transport is not None
        self._transport.send(WSMsgType.TEXT, encode_client(msg))

    async def request(self, msg: ClientMessage) -> Any:
        """Send with a fresh `rid` and await its reply; a server `error` raises ServerError."""
        rid = next(self._rids)
        msg.rid = rid  # type: ignore[union-attr]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self.send(msg)
            async with asyncio.timeout(self.request_timeout):
                return await fut
        finally:
            self._pending.pop(rid, None)

    def send_raw(self, data: bytes | str, binary: bool = False) -> None:
        """Send an arbitrary frame (for tests of the server's input handling)."""
        self.raise_if_closed()
        assert self._transport is not None
        self._transport.send(WSMsgType.BINARY if binary else WSMsgType.TEXT, data)

    @property
    def closed(self) -> bool:
        return self._closed is not None and self._closed.done()

    def raise_if_closed(self) -> None:
        if self._closed is not None and self._closed.done():
            raise self._closed.result()

    async def wait_closed(self, timeout: float | None = None) -> ConnectionClosed:
        """Wait for the connection to end; returns the close code and reason."""
        assert self._closed is not None
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._closed)

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
        for session in self.sessions.values():
            session.playout.close()
        if self._transport is not None and not self.closed:
            self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()
            await self.wait_closed(self.request_timeout)

    def _on_frame(self, data: bytes, arrival: float) -> None:
        try:
            messages = decode_server(data)
        except msgspec.DecodeError as exc:
            self.errors.append(Error(code="client_decode", message=str(exc)))
            return
        for msg in messages:
            self._dispatch(msg, arrival)
        self.changed.notify()

    def _dispatch(self, msg: Any, arrival: float) -> None:
        kind = type(msg)
        session = getattr(msg, "session", None)
        rid = getattr(msg, "rid", None)
        if kind is TimeReply:
            fut = self._time_pending.get(msg.t0)
            if fut is not None and not fut.done():
                fut.set_result(TimeSample(msg.t0, msg.t1, msg.t2, arrival))
        elif kind is Joined:
            # Adopt at once: messages later in this same frame (replayed controls) belong to it.
            joined = Session(self, msg)
            self.sessions[joined.id] = joined
            self._resolve(rid, joined)
        elif kind is Left or kind is Ack:
            self._resolve(rid, msg)
        elif kind is Error:
            if rid is not None and rid in self._pending:
                self._reject(rid, ServerError(msg.code, msg.message, msg.session))
            elif session in self.sessions:
                self.sessions[session].apply(msg, arrival)
            else:
                self.errors.append(msg)
        elif kind is Welcome:
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(msg)
        elif session in self.sessions:
            self.sessions[session].apply(msg, arrival)

    def _resolve(self, rid: int | None, value: Any) -> None:
        fut = self._pending.get(rid) if rid is not None else None
        if fut is not None and not fut.done():
            fut.set_result(value)

    def _reject(self, rid: int, exc: Exception) -> None:
        fut = self._pending.get(rid)
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _on_disconnected(self) -> None:
        code, reason = self._close_info or (1006, "connection lost")
        closed = ConnectionClosed(int(code), reason)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(closed)
        if self._probe_task is not None:
            self._probe_task.cancel()
        for fut in [*self._pending.values(), *self._time_pending.values()]:
            if not fut.done():
                fut.set_exception(closed)
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(closed)
        for session in self.sessions.values():
            session.changed.notify()
        self.changed.notify()
