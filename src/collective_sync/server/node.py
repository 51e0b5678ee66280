"""The server core: connections in, sessions in the middle, encoded frames out.

The node knows neither the transport (it talks to a `FrameSink`) nor what carries broadcasts
between processes (a `Backplane`). Fan-out is built for many receivers: a broadcast is encoded
once; each receiver's messages of one event-loop turn go out as one frame at `flush()`, and
receivers with identical pending messages share the joined frame.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from .. import __version__
from ..protocol.codec import decode_client, encode, join_frame, too_large
from ..protocol.errors import CloseCode, ErrorCode, ProtocolError
from ..protocol.messages import (
    Ack,
    Control,
    Create,
    Error,
    Handover,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    StateOut,
    StateSet,
    TimeReply,
    TimeRequest,
    UpdateMeta,
    Welcome,
)
from .backplane import Backplane, Broadcast, InMemoryBackplane
from .config import ServerConfig
from .outbox import Outbox
from .ratelimit import TokenBucket, Verdict
from .session import Out, Participant, Session

log = logging.getLogger("collective_sync.node")


class FrameSink(Protocol):
    """What the core needs from a transport connection."""

    def send_frame(self, frame: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


class Connection:
    """Core-side state of one client connection (any transport)."""

    __slots__ = ("bucket", "closing", "dirty", "id", "outbox", "sessions", "sink", "told_rate_limited")

    def __init__(self, cid: str, sink: FrameSink, bucket: TokenBucket, outbox: Outbox):
        self.id = cid
        self.sink = sink
        self.bucket = bucket
        self.outbox = outbox
        self.sessions: dict[str, str] = {}  # session id -> participant id
        self.dirty = False
        self.closing = False
        self.told_rate_limited = False


@dataclass
class NodeStats:
    """Plain counters on the hot path; exported by the Prometheus collector at scrape time."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    deliveries: int = 0  # messages handed to receivers (a frame may hold many)
    coalesced_drops: int = 0
    slow_closes: int = 0

    def __post_init__(self) -> None:
        self.messages_in: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()


class Node:
    def __init__(
        self,
        config: ServerConfig,
        clock: Callable[[], float],
        backplane: Backplane | None = None,
        schedule_flush: Callable[[], None] | None = None,
    ):
        self.config = config
        self.clock = clock
        self.backplane: Backplane = backplane or InMemoryBackplane()
        self.schedule_flush = schedule_flush or (lambda: None)
        self.on_session_end: Callable[[str], None] | None = None  # observers (logs, tests)
        self.sessions: dict[str, Session] = {}
        self.members: dict[str, dict[str, Connection]] = {}  # session -> participant -> local conn
        self.conns: dict[str, Connection] = {}
        self.stats = NodeStats()
        self._dirty: list[Connection] = []
        self._closing: list[tuple[Connection, CloseCode, str]] = []  # decided, done at the next flush
        self._watch: set[str] = set()  # sessions with a pending deadline (grace or expiry)
        self._ids = itertools.count(1)
        self._limits = Limits(
            config.max_message_bytes, config.rate_per_second, config.burst, config.max_sessions_per_connection
        )
        self._handlers: dict[type, Callable[[Connection, Any, float], None]] = {
            Create: self._create,
            Join: self._join,
            Leave: self._leave,
            UpdateMeta: self._meta,
            Handover: self._handover,
            Control: self._control,
            StateSet: self._state_set,
        }

    # --- transport events ------------------------------------------------------------------

    def connect(self, sink: FrameSink) -> Connection:
        now = self.clock()
        cid = f"c{next(self._ids)}"
        conn = Connection(
            cid,
            sink,
            TokenBucket(self.config.rate_per_second, self.config.burst, now),
            Outbox(self.config.max_backlog_bytes),
        )
        self.conns[cid] = conn
        self._private(conn, Welcome(server=__version__, conn=cid, time=now, limits=self._limits))
        return conn

    def receive(self, conn: Connection, data: bytes) -> None:
        """One complete client frame. Every failure becomes a typed error to this sender only."""
        if conn.closing:
            return
        now = self.clock()
        self.stats.frames_in += 1
        verdict = conn.bucket.take(now)
        if verdict is not Verdict.OK:
            self._rate_limited(conn, verdict)
            return
        if not conn.bucket.excess:  # back under the rate: a later drop is told again
            conn.told_rate_limited = False
        try:
            msg = decode_client(data, self.config.max_message_bytes)
        except ProtocolError as exc:
            self._refuse(conn, exc)
            return
        self.stats.messages_in[msg.__struct_config__.tag] += 1  # type: ignore[index]
        if type(msg) is TimeRequest:
            self._time(conn, msg, now)
            return
        try:
            self._handlers[type(msg)](conn, msg, now)
        except ProtocolError as exc:
            exc.rid = msg.rid  # type: ignore[union-attr]
            exc.session = getattr(msg, "session", None)
            self._refuse(conn, exc)

    def too_large(self, conn: Connection, size: int) -> None:
        """A (fragmented) message passed the size limit before it was complete: refuse it unread."""
        if conn.closing:
            return
        self.stats.frames_in += 1
        self._refuse(conn, too_large(size, self.config.max_message_bytes))

    def protocol_error(self, conn: Connection, reason: str) -> None:
        """The transport saw broken WebSocket framing: close with 1002."""
        self._close(conn, CloseCode.PROTOCOL_ERROR, reason)

    def disconnect(self, conn: Connection) -> None:
        """Transport gone, or closed by the server: participants stay for the grace period,
        shown as disconnected, and nothing more is queued for this connection."""
        if self.conns.pop(conn.id, None) is None:
            return
        conn.closing = True
        conn.outbox.clear()
        self.stats.coalesced_drops += conn.outbox.coalesced_drops
        now = self.clock()
        for sid, pid in conn.sessions.items():
            members = self.members.get(sid)
            if members is not None and members.get(pid) is conn:
                del members[pid]
            session = self.sessions.get(sid)
            if session is not None:
                self._publish(session, session.drop(pid, now))
                self._watch.add(sid)
        conn.sessions.clear()

    def pause(self, conn: Connection) -> None:
        """The transport's buffer is above its high-water mark: start coalescing."""
        conn.outbox.paused = True

    def resume(self, conn: Connection) -> None:
        conn.outbox.paused = False
        if conn.outbox:
            self._mark(conn)

    def tick(self) -> None:
        """Expire grace periods (with leader failover) and end sessions left empty."""
        now = self.clock()
        for sid in list(self._watch):
            session = self.sessions.get(sid)
            if session is None:
                self._watch.discard(sid)
                continue
            self._publish(session, session.expire(now))
            if session.participants:
                if all(p.dropped_at is None for p in session.participants.values()):
                    self._watch.discard(sid)
            elif session.empty_since is not None and now - session.empty_since >= self.config.session_ttl:
                self._end(session)

    def flush(self) -> None:
        """Send each dirty receiver everything it got this turn as one frame."""
        if self._closing:
            closing, self._closing = self._closing, []
            for conn, code, reason in closing:
                self._finish_close(conn, code, reason)
        dirty, self._dirty = self._dirty, []
        cache: dict[tuple[bytes, ...], bytes] = {}
        stats = self.stats
        for conn in dirty:
            conn.dirty = False
            box = conn.outbox
            if box.paused or conn.closing:
                continue
            items = box.pending()
            if not items:
                continue
            frame = cache.get(items)
            if frame is None:
                frame = cache[items] = join_frame(items)
            box.clear()
            stats.deliveries += len(items)
            stats.frames_out += 1
            stats.bytes_out += len(frame)
            conn.sink.send_frame(frame)

    # --- request handlers ------------------------------------------------------------------

    def _create(self, conn: Connection, msg: Create, now: float) -> None:
        self._check_room(conn)
        self._check_meta(msg.meta)
        sid = msg.settings.session_id
        if sid is None:
            sid = self._new_session_id()
        elif sid in self.sessions:
            raise ProtocolError(ErrorCode.SESSION_EXISTS, f"session {sid!r} already exists")
        if len(self.sessions) >= self.config.max_sessions:
            raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "the server is at its session limit")
        settings = msgspec.structs.replace(msg.settings, session_id=sid)
        session = Session(sid, settings, now, self.config.session)
        self.sessions[sid] = session
        self.members[sid] = {}
        self.backplane.subscribe(sid, self._deliver)
        p, outs = session.add(msg.name, "participant", msg.meta, conn.id, now)
        log.info("session %s created by %s (public=%s)", sid, conn.id, settings.public)
        self._enter(conn, session, p, msg.rid, outs, None)

    def _join(self, conn: Connection, msg: Join, now: float) -> None:
        session = self.sessions.get(msg.session)
        if session is None:
            raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"no session {msg.session!r}")
        if msg.session in conn.sessions:
            raise ProtocolError(ErrorCode.ALREADY_JOINED, "this connection is already in that session")
        self._check_room(conn)
        self._check_meta(msg.meta)
        if msg.resume is not None:
            previous = {p.id: p.conn for p in session.participants.values()}
            p, outs = session.resume(msg.resume, conn.id)
            old = self.conns.get(previous[p.id] or "")
            if old is not None and old is not conn:
                old.sessions.pop(session.id, None)
        else:
            p, outs = session.add(msg.name, msg.role, msg.meta, conn.id, now)
        self._enter(conn, session, p, msg.rid, outs, msg.last_seq)

    def _enter(
        self,
        conn: Connection,
        session: Session,
        p: Participant,
        rid: int | None,
        outs: list[Out],
        last_seq: int | None,
    ) -> None:
        conn.sessions[session.id] = p.id
        self.members[session.id][p.id] = conn
        self._private(
            conn,
            Joined(
                session=session.id,
                you=p.id,
                token=p.token,
                role=p.role,
                leader=session.leader,
                participants=[q.info() for q in session.participants.values()],
                state=session.snapshot(),
                seq=session.seq,
                settings=session.settings,
                rid=rid,
            ),
        )
        if last_seq is not None:
            for ctl in session.replay_after(last_seq):
                self._private(conn, ctl)
        self._publish(session, outs)

    def _leave(self, conn: Connection, msg: Leave, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        del conn.sessions[session.id]
        self.members[session.id].pop(pid, None)
        self._private(conn, Left(session=session.id, rid=msg.rid))
        self._publish(session, session.remove(pid, now))
        self._watch.add(session.id)

    def _meta(self, conn: Connection, msg: UpdateMeta, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._check_meta(msg.meta)
        self._publish(session, session.update_meta(pid, msg.meta))
        self._ack(conn, msg.rid)

    def _handover(self, conn: Connection, msg: Handover, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._publish(session, session.handover(pid, msg.to))
        self._ack(conn, msg.rid)

    def _control(self, conn: Connection, msg: Control, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        out, outs = session.control(pid, msg.event, msg.payload, msg.at, now)
        self._publish(session, outs)
        self._ack(conn, msg.rid, out.seq)

    def _state_set(self, conn: Connection, msg: StateSet, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._publish(session, session.set_state(pid, msg.set, msg.at, now))
        self._ack(conn, msg.rid)

    def _time(self, conn: Connection, msg: TimeRequest, t1: float) -> None:
        """Answered at once, outside the per-turn batch, so t2 is close to the real send time."""
        conn.sink.send_frame(encode(TimeReply(t0=msg.t0, t1=t1, t2=self.clock())))
        self.stats.frames_out += 1

    # --- helpers ---------------------------------------------------------------------------

    def _member(self, conn: Connection, sid: str) -> tuple[Session, str]:
        pid = conn.sessions.get(sid)
        session = self.sessions.get(sid)
        if pid is None or session is None:
            raise ProtocolError(ErrorCode.NOT_IN_SESSION, f"not joined to session {sid!r}")
        return session, pid

    def _check_room(self, conn: Connection) -> None:
        if len(conn.sessions) >= self.config.max_sessions_per_connection:
            raise ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"at most {self.config.max_sessions_per_connection} sessions per connection",
            )

    def _check_meta(self, meta: dict[str, object]) -> None:
        if len(msgspec.json.encode(meta)) > self.config.max_meta_bytes:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"meta is limited to {self.config.max_meta_bytes} bytes"
            )

    def _new_session_id(self) -> str:
        while True:
            sid = secrets.token_urlsafe(6)
            if sid not in self.sessions:
                return sid

    def _end(self, session: Session) -> None:
        del self.sessions[session.id]
        self.members.pop(session.id, None)
        self.backplane.unsubscribe(session.id)
        self._watch.discard(session.id)
        log.info("session %s ended", session.id)
        if self.on_session_end is not None:
            self.on_session_end(session.id)

    def _publish(self, session: Session, outs: list[Out]) -> None:
        for out in outs:
            msg = out.msg
            self.backplane.publish(
                session.id,
                Broadcast(encode(msg), out.to, out.exclude, msg if type(msg) is StateOut else None),
            )

    def _deliver(self, sid: str, item: Broadcast) -> None:
        """Backplane handler: hand one encoded message to this process's members of `sid`."""
        members = self.members.get(sid)
        if not members:
            return
        if item.to is not None:
            conn = members.get(item.to)
            targets: Iterable[Connection] = [conn] if conn is not None else []
        else:
            skip = item.exclude
            targets = [c for pid, c in members.items() if pid != skip] if skip else members.values()
        data, state = item.data, item.state
        for conn in targets:
            if conn.closing:
                continue
            box = conn.outbox
            ok = box.push_state(data, state) if state is not None else box.push(data)
            if not ok:
                self._slow(conn)
            elif not conn.dirty:
                self._mark(conn)

    def _private(self, conn: Connection, msg: msgspec.Struct) -> None:
        if conn.closing:
            return
        if not conn.outbox.push(encode(msg)):
            self._slow(conn)
        elif not conn.dirty:
            self._mark(conn)

    def _ack(self, conn: Connection, rid: int | None, seq: int | None = None) -> None:
        if rid is not None:
            self._private(conn, Ack(rid=rid, seq=seq))

    def _refuse(self, conn: Connection, exc: ProtocolError) -> None:
        """The one refusal path: count it and tell the sender, with its request's rid/session."""
        self.stats.errors[exc.code.value] += 1
        self._private(conn, Error(code=exc.code, message=str(exc), rid=exc.rid, session=exc.session))

    def _rate_limited(self, conn: Connection, verdict: Verdict) -> None:
        if verdict is Verdict.ABUSE:
            self.stats.errors["flood_close"] += 1
            self._close(conn, CloseCode.POLICY_VIOLATION, "flooding after rate-limit errors")
        elif not conn.told_rate_limited:
            conn.told_rate_limited = True
            rate = self.config.rate_per_second
            self._refuse(
                conn,
                ProtocolError(
                    ErrorCode.RATE_LIMITED, f"over {rate:g} messages/s; messages are being dropped"
                ),
            )
        else:
            self.stats.errors[ErrorCode.RATE_LIMITED.value] += 1

    def _slow(self, conn: Connection) -> None:
        if conn.closing:
            return
        self.stats.slow_closes += 1
        self._close(conn, CloseCode.SLOW_CONSUMER, "receiver too slow; reconnect and resume")

    def _close(self, conn: Connection, code: CloseCode, reason: str) -> None:
        """Close with `code`; what is already queued (e.g. the error that explains it) goes first,
        unless the queue itself is the problem (slow consumer). From this moment nothing more is
        queued for the connection; at the next flush it is gone for the node (not counted, shown
        as dropped) and the transport has only the close handshake left to do."""
        if conn.closing:
            return
        conn.closing = True
        if code is CloseCode.SLOW_CONSUMER:
            conn.outbox.clear()  # the backlog is the problem: none of it will be sent
        self._closing.append((conn, code, reason))
        self.schedule_flush()

    def _finish_close(self, conn: Connection, code: CloseCode, reason: str) -> None:
        """Done at flush, not inside a fan-out loop, so the drop's presence update follows
        everything the session produced before the close decision."""
        if not conn.outbox.paused:
            frame = conn.outbox.take()
            if frame is not None:
                conn.sink.send_frame(frame)
        self.disconnect(conn)
        conn.sink.close(int(code), reason)

    def _mark(self, conn: Connection) -> None:
        conn.dirty = True
        if not self._dirty:
            self.schedule_flush()
        self._dirty.append(conn)

    def coalesced_drops(self) -> int:
        return self.stats.coalesced_drops + sum(c.outbox.coalesced_drops for c in self.conns.values())
