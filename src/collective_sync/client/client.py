"""Asyncio client SDK: one WebSocket connection, any number of joined sessions.

Built on picows callbacks rather than a reader task: frames are decoded and applied in the
transport callback, and the arrival time of a time-exchange reply is read right there, which
keeps the client's share of round-trip jitter small.

When the connection drops (server restart, network), the client reconnects on its own with a
jittered exponential backoff, one socket at a time, and rejoins every session with its resume
token and last control seq: same participant, no control missed. Its connection state is
`Client.state`, and every change is a `ConnectionEvent` in `Client.connection_events`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ..protocol.codec import decode_server, encode_client
from ..protocol.messages import (
    Ack,
    Auth,
    ClientMessage,
    Create,
    Error,
    Invite,
    Join,
    Joined,
    JoinRole,
    Left,
    Roster,
    RtcAnswer,
    SessionSettings,
    TimeReply,
    TimeRequest,
    Welcome,
)
from ..timing import ClockEvent, DisciplinedClock, Sample
from .backoff import backoff_delay
from .errors import ConnectionClosed, ServerError
from .session import Session
from .signal import Changed

Clock = Callable[[], float]
log = logging.getLogger("collective_sync.client")

# Closes that a retry cannot fix: our own close (1000), a framing bug (1002), flooding (1008),
# an oversized frame (1009). Everything else (1001 restart, 1006 cut, 4002 slow) reconnects.
FINAL_CLOSE_CODES = frozenset({1000, 1002, 1008, 1009})
# A rejoin refused with these means the session is gone: stop retrying it.
GONE_CODES = frozenset({"session_ended", "session_not_found"})

ConnectionState = Literal["connecting", "open", "lost", "closed"]
_LEFT_BECAUSE = {
    "replaced": "this participant continues on another connection",
    "removed": "the host removed you from this session",
    "ended": "the host ended this session",
}
TokenSource = str | Callable[[], str | Awaitable[str]]  # a JWT, or what gives a fresh one


def _expiry(token: str) -> float | None:
    """The `exp` of a JWT, read without verifying (the server verifies): when to refresh."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """`connecting` {attempt, delay}, `open` {reconnect}, `resumed` {session, same, epoch_changed,
    you}, `lost` {code, reason}, `ended` {session, code, reason}; `at` is the local clock."""

    kind: Literal["connecting", "open", "resumed", "lost", "ended"]
    at: float
    detail: dict[str, Any] = field(default_factory=dict)


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
    """One socket's callbacks. A socket the client has already let go of is ignored."""

    def __init__(self, client: Client):
        self.client = client
        self.close_info: tuple[Any, str] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.client._transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if transport is not self.client._transport:
            return
        arrival = self.client.clock()
        if frame.msg_type is WSMsgType.TEXT or frame.msg_type is WSMsgType.BINARY:
            self.client._on_frame(frame.get_payload_as_bytes(), arrival)
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_info = (frame.get_close_code(), frame.get_close_reason())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if transport is self.client._transport:
            self.client._on_disconnected(self.close_info)


class Client:
    """Connect with `await Client.connect(url)`; use as an async context manager to close."""

    def __init__(
        self,
        clock: Clock | None = None,
        request_timeout: float = 10.0,
        url: str = "",
        reconnect: bool = True,
        discipline: bool = True,
        token: TokenSource | None = None,
    ):
        self.clock = clock or steady_clock()  # injectable local clock (tests offset and skew it)
        self.request_timeout = request_timeout
        self.url = url
        self.reconnect = reconnect
        self.discipline = discipline
        self.state: ConnectionState = "connecting"
        self.connection_events: deque[ConnectionEvent] = deque(maxlen=1000)
        self._lost: ConnectionClosed | None = None  # why the socket is gone, while reconnecting
        self._user_closed = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self.token_source: TokenSource | None = token
        self.ssl_context: ssl.SSLContext | None = None
        self._refresh_task: asyncio.Task[None] | None = None
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
        self._closed: asyncio.Future[ConnectionClosed] | None = None  # closed for good
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
        reconnect: bool = True,
        token: TokenSource | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Client:
        """Open the connection and wait for `welcome`. With `discipline` (the default) a
        background task keeps exchanging time with the server (a burst now, then adaptively)
        and `connect` waits up to `lock_timeout` for the network clock to lock; on a path too
        noisy for that it returns anyway (`client.network.locked` tells, and it keeps trying).
        With `reconnect` (the default) a dropped connection is re-established and every session
        resumed; the first connection is not retried (a wrong URL fails at once). `token` is a
        JWT, or a function (sync or async) giving a fresh one, for servers that require one."""
        self = cls(clock, timeout, url, reconnect, discipline, token)
        self.ssl_context = ssl_context  # for wss:// with a private CA (default: the system's)
        self._closed = asyncio.get_running_loop().create_future()
        try:
            await self._open(timeout)
        except ServerError as exc:
            self._finish(ConnectionClosed(4001, str(exc)))
            raise
        self._emit("open", reconnect=False)
        if discipline:
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda c: c.network.locked, lock_timeout)
        return self

    async def _open(self, timeout: float) -> None:
        """One socket: connect, wait for `welcome`, authenticate if the server asks, start
        probing time. A refused token raises ServerError (and lets the socket go)."""
        self._welcome = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout):
            await picows.ws_connect(lambda: _Listener(self), self.url, ssl_context=self.ssl_context)
            self.welcome = await self._welcome
        self.state, self._lost = "open", None
        if self.welcome.auth:
            try:
                await self.refresh_token()
            except ServerError as exc:
                self._let_go(ConnectionClosed(4001, str(exc)))
                raise
        if self.discipline:
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop())

    async def refresh_token(self, token: str | None = None) -> None:
        """Send a token (`token`, else a fresh one from the client's token source) over the live
        connection: on connect, before the current one expires, and whenever the app has a new
        one. A source that is a function is called again each time; refreshing is scheduled by
        itself shortly before the token's `exp`."""
        if token is None:
            token = await self._token()
        if token is None:
            raise ServerError("unauthorized", "this server requires a token: Client.connect(url, token=...)")
        await self.request(Auth(token=token))
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        expires = _expiry(token)
        if expires is not None and callable(self.token_source):
            delay = max(1.0, (expires - time.time()) * 0.9 - 5.0)  # well before it runs out
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_later(delay))

    async def _refresh_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.refresh_token()
        except (ServerError, ConnectionError, TimeoutError) as exc:
            log.warning("token refresh failed: %s", exc)  # the server will close with 4003

    async def _token(self) -> str | None:
        source = self.token_source
        if source is None or isinstance(source, str):
            return source
        value = source()
        return await value if inspect.isawaitable(value) else value

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
        private: bool = False,
        ceremony_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        playout_delay: float = 0.15,
    ) -> Session:
        """Create a session and join it as its leader; `playout_delay` is the session's D."""
        settings = SessionSettings(
            session_id=session_id,
            public=public,
            private=private,
            ceremony_type=ceremony_type,
            playout_delay=playout_delay,
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
        invite: str | None = None,
    ) -> Session:
        """Join by id; `resume` (a previous `Session.token`) reclaims the same participant;
        `invite` (from the host's `Session.invite()`) opens a private session."""
        session: Session = await self.request(
            Join(
                session=session_id,
                name=name,
                role=role,
                meta=dict(meta or {}),
                resume=resume,
                last_seq=last_seq,
                invite=invite,
            )
        )
        session.invite_token = invite or session.invite_token
        return session

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    # --- connection state ------------------------------------------------------------------

    @property
    def local_port(self) -> int | None:
        """This client's TCP port while a socket is open (tests cut it in a proxy)."""
        if self._transport is None:
            return None
        return int(self._transport.underlying_transport.get_extra_info("sockname")[1])

    @property
    def ready(self) -> bool:
        """Connected, and every session rejoined after the last reconnect."""
        return self.state == "open" and (self._reconnect_task is None or self._reconnect_task.done())

    def _emit(self, kind: Any, **detail: Any) -> None:
        self.connection_events.append(ConnectionEvent(kind, self.clock(), detail))
        self.changed.notify()

    async def _reconnect(self) -> None:
        """Until connected and every session rejoined (or the client is closed): wait a jittered
        backoff, open ONE socket (the previous one is already let go), resume each session."""
        attempt = 0
        while not self._user_closed:
            delay = backoff_delay(attempt, random.random())
            self.state = "connecting"
            self._emit("connecting", attempt=attempt, delay=delay)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._open(self.request_timeout)
                self._emit("open", reconnect=True)
                await self._rejoin_all()
            except ServerError as exc:  # the token was refused: retrying cannot help
                self._finish(ConnectionClosed(4001, str(exc)))
                return
            except (OSError, TimeoutError, ConnectionClosed, picows.WSError) as exc:
                log.debug("reconnect attempt %d failed: %r", attempt, exc)
                self._let_go(ConnectionClosed(1006, f"reconnect failed: {exc!r}"))
                continue
            return

    async def _rejoin_all(self) -> None:
        for session in list(self.sessions.values()):
            if session.left:
                continue
            old_epoch = session.epoch
            me = session.participants.get(session.me)
            join = Join(
                session=session.id,
                name=me.name if me is not None else session.name,
                role="observer" if session.role == "observer" else "participant",
                meta=dict(me.meta) if me is not None else {},
                resume=session.token,
                last_seq=session.seq,  # every control missed, resumed or not
            )
            try:
                same = await self._rejoin(join)
            except ServerError as exc:  # gone (ended, unknown) or refused: no more retries
                self.sessions.pop(session.id, None)
                session.end(exc.code, exc.message)
                self._emit("ended", session=session.id, code=exc.code, reason=exc.message)
                continue
            epoch_changed = session.epoch != old_epoch
            self._emit("resumed", session=session.id, same=same, epoch_changed=epoch_changed, you=session.me)

    async def _rejoin(self, join: Join) -> bool:
        """Resume; if the grace period is over, join afresh as someone new. True: the same one."""
        try:
            await self.request(join)
            return True
        except ServerError as exc:
            if exc.code != "resume_failed":
                raise
        join.resume = None
        join.invite = self.sessions[join.session].invite_token  # a private session needs it again
        await self.request(join)
        return False

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
        self._transport_or_raise().send(WSMsgType.TEXT, encode_client(msg))

    def _transport_or_raise(self) -> WSTransport:
        """The open socket; while reconnecting, raise ConnectionClosed (why it dropped)."""
        self.raise_if_closed()
        if self._transport is None or self.state != "open":
            raise self._lost or ConnectionClosed(1006, "not connected")
        return self._transport

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
        self._transport_or_raise().send(WSMsgType.BINARY if binary else WSMsgType.TEXT, data)

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
        self._user_closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._probe_task is not None:
            self._probe_task.cancel()
        for session in self.sessions.values():
            session.playout.close()
        if self.closed:
            return
        if self._transport is not None:
            self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()
            with contextlib.suppress(TimeoutError):
                await self.wait_closed(self.request_timeout)
        if not self.closed:
            self._let_go(ConnectionClosed(1000, "closed by the client"))
            self._finish(ConnectionClosed(1000, "closed by the client"))

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
            # A rejoin after a reconnect updates the Session object the application holds.
            joined = self.sessions.get(msg.session)
            if joined is not None and not joined.left:
                joined.adopt(msg)
            else:
                joined = Session(self, msg)
                self.sessions[joined.id] = joined
            self._resolve(rid, joined)
        elif kind is Left and msg.reason is not None and session in self.sessions:
            # Not asked for: resumed from another connection, removed by the host, or ended.
            gone = self.sessions.pop(session)
            gone.end(msg.reason, _LEFT_BECAUSE[msg.reason])
            self._emit("ended", session=session, code=msg.reason, reason=_LEFT_BECAUSE[msg.reason])
        elif kind is Left or kind is Ack or kind is Invite or kind is RtcAnswer or kind is Roster:
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

    def _on_disconnected(self, info: tuple[Any, str] | None) -> None:
        """The current socket is gone: reconnect, unless it was us, reconnecting is off, or the
        close code says a retry cannot help."""
        code, reason = info or (1006, "connection lost")
        closed = ConnectionClosed(int(code), reason)
        was_open = self.state == "open"
        self._let_go(closed)
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return  # a reconnect attempt's socket: the attempt sees it fail and goes on
        if self._user_closed or not self.reconnect or not was_open or closed.code in FINAL_CLOSE_CODES:
            self._finish(closed)
            return
        self.state = "lost"
        self._emit("lost", code=closed.code, reason=closed.reason)
        for session in self.sessions.values():
            session.changed.notify()
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())
            self._reconnect_task.add_done_callback(lambda _: self.changed.notify())  # `ready` now

    def _let_go(self, why: ConnectionClosed) -> None:
        """Forget the current socket (closing it if still open): its late callbacks are ignored,
        and everything waiting on it fails with `why`."""
        transport, self._transport = self._transport, None
        if transport is not None and not transport.is_disconnected:
            transport.disconnect()
        self._lost = why
        if self.state == "open":
            self.state = "lost"
        if self._probe_task is not None:
            self._probe_task.cancel()
        for fut in [*self._pending.values(), *self._time_pending.values()]:
            if not fut.done():
                fut.set_exception(why)
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(why)
            self._welcome.exception()  # may have no awaiter (the socket died before welcome)

    def _finish(self, closed: ConnectionClosed) -> None:
        self.state = "closed"
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(closed)
        for session in self.sessions.values():
            session.changed.notify()
        self.changed.notify()
