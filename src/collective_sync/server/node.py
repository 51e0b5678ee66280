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
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .. import __version__
from ..auth import Identity, UnknownKey, Verifier
from ..auth.invites import issue as issue_invite
from ..protocol.codec import decode_client, encode, join_frame, too_large
from ..protocol.errors import CloseCode, ErrorCode, ProtocolError
from ..protocol.messages import (
    Ack,
    Auth,
    ClientMessage,
    Control,
    ControlOut,
    Create,
    CreateInvite,
    Error,
    Handover,
    Invite,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    Moderate,
    Presence,
    Roster,
    RosterRequest,
    RtcAnswer,
    RtcCandidate,
    RtcClose,
    RtcOffer,
    RtcPublish,
    Signal,
    SignalOut,
    StateOut,
    StateSet,
    TimeReply,
    TimeRequest,
    UpdateMeta,
    Welcome,
)
from .admission import Admission
from .backplane import Backplane, Broadcast, InMemoryBackplane
from .config import ServerConfig
from .outbox import Outbox
from .ratelimit import TokenBucket, Verdict
from .sendpool import RawSink, SendPool
from .session import Out, Participant, Session
from .store import Ended, MemoryStore, Store

if TYPE_CHECKING:
    from .sfu.hub import MediaHub
    from .sfu.streamclock import ClockMap

log = logging.getLogger("collective_sync.node")
FANOUT_MEASURED = 64  # flushes to at least this many receivers set `Node.flush_took`


class FrameSink(Protocol):
    """What the core needs from a transport connection."""

    def send_frame(self, frame: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


class Connection:
    """Core-side state of one client connection (any transport)."""

    __slots__ = (
        "bucket",
        "closing",
        "dirty",
        "id",
        "identity",
        "ip",
        "opened_at",
        "outbox",
        "queued",
        "sessions",
        "sink",
        "told_rate_limited",
    )

    def __init__(
        self, cid: str, sink: FrameSink, bucket: TokenBucket, outbox: Outbox, opened_at: float = 0.0
    ):
        self.id = cid
        self.identity: Identity | None = None  # the verified user, once an `auth` was accepted
        self.opened_at = opened_at
        self.ip: str | None = None  # the peer's address, when the transport knows it
        self.sink = sink
        self.bucket = bucket
        self.outbox = outbox
        self.sessions: dict[str, str] = {}  # session id -> participant id
        self.dirty = False
        self.closing = False
        self.told_rate_limited = False
        self.queued = 0  # its requests waiting for admission (later ones wait behind them)


@dataclass(slots=True)
class _Held:
    """What a session sends once a write of its is durable; items keep their order."""

    ticket: int  # the store write that must be durable first (0: none of its own)
    send: Callable[[], None]


@dataclass
class NodeStats:
    """Plain counters on the hot path; exported by the Prometheus collector at scrape time."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    deliveries: int = 0  # messages handed to receivers (a frame may hold many)
    coalesced_drops: int = 0
    slow_closes: int = 0
    closed: int = 0  # connections gone (for the GC policy)

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
        store: Store | None = None,
        verifier: Verifier | None = None,
    ):
        self.config = config
        self.clock = clock
        self.backplane: Backplane = backplane or InMemoryBackplane()
        self.store: Store = store or MemoryStore()
        self.store.on_durable = self._durable
        self.verifier = verifier  # None: anonymous (no tokens); else every connection must auth
        # Fetch the key set again (I/O, in a thread), then call back on the loop; set by the app.
        self.refresh_keys: Callable[[Callable[[], None]], None] | None = None
        self._auth_checked_at = 0.0
        self._per_ip: Counter[str] = Counter()  # open connections per peer address
        self._per_user: Counter[str] = Counter()  # open authenticated connections per user
        self._user_buckets: dict[str, TokenBucket] = {}  # one message budget per user
        self.epoch = self.store.epoch
        self.stopping = False
        # Sessions that really ended, so a late resume hears "ended", not "not found".
        self.ended: OrderedDict[str, Ended] = OrderedDict()
        self._held: dict[str, deque[_Held]] = {}
        self._commit_due = False
        self._snapshot_due: dict[str, None] = {}  # sessions whose state changed since their snapshot
        self._snapshot_at: dict[str, float] = {}
        self.schedule_flush = schedule_flush or (lambda: None)
        # Joins (and upgrades, tcp.RequestGate) take turns; the app sets `admission.defer`.
        self.admission = Admission(config.admission_budget, turn=lambda: self.flush_took)
        self.send_pool: SendPool | None = None  # large flushes on several threads (set by the app)
        self.on_session_end: Callable[[str], None] | None = None  # observers (logs, tests)
        self.media: MediaHub | None = None  # the SFU, when WebRTC is on (set by the app)
        self._repair: set[Connection] = set()  # state went by data channel; the WS copy follows
        self._repair_at = 0.0
        self.sessions: dict[str, Session] = {}
        self.members: dict[str, dict[str, Connection]] = {}  # session -> participant -> local conn
        self.conns: dict[str, Connection] = {}
        self.stats = NodeStats()
        self._dirty: list[Connection] = []
        self._closing: list[tuple[Connection, CloseCode, str]] = []  # decided, done at the next flush
        self._watch: set[str] = set()  # sessions with a pending deadline (grace or expiry)
        self._counting: set[str] = set()  # sessions whose head count has yet to go out
        self._turn_state: dict[str, list[StateOut]] = {}  # a large session's state of this turn
        self.flush_took = 0.0  # seconds the last fan-out (flush to many) spent writing
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
            Auth: self._auth,
            Moderate: self._moderate,
            CreateInvite: self._invite,
            RtcOffer: self._rtc_offer,
            RtcCandidate: self._rtc_candidate,
            RtcPublish: self._rtc_publish,
            RtcClose: self._rtc_close,
            Signal: self._signal,
            RosterRequest: self._roster,
        }

    # --- lifetime --------------------------------------------------------------------------

    def restore(self) -> None:
        """Load what the store kept: sessions, participants (all dropped, in a grace period),
        state, control history, ended sessions. Called once, before serving."""
        rec = self.store.recover()
        self.epoch = rec.epoch
        now = self.clock()
        for saved in rec.sessions:
            session = Session.restore(saved, self.config.session, now, rec.stopped_at)
            self._add_session(session)
            self._watch.add(session.id)
            self._persist(session)
        for e in sorted(rec.ended, key=lambda e: e.at):
            self._remember_end(e)
        if rec.sessions or not rec.clean:
            log.warning(
                "restored %d sessions after %s (epoch %s)",
                len(rec.sessions),
                "a clean shutdown" if rec.clean else "a CRASH: state since the last snapshots is lost",
                rec.epoch,
            )

    def shutdown(self) -> None:
        """The server is stopping: persist everyone as dropped now (they get `restart_grace`
        after the restart) and every session's state, then stop announcing drops."""
        now = self.clock()
        self.stopping = True
        for session in self.sessions.values():
            session.all_dropped(now)
            self._persist(session)
            self._snapshot(session, now)
        self.store.commit()

    def close_all(self, code: CloseCode, reason: str) -> None:
        for conn in list(self.conns.values()):
            self._close(conn, code, reason)
        self.flush()

    # --- transport events ------------------------------------------------------------------

    def connect(self, sink: FrameSink, ip: str | None = None) -> Connection:
        """A new connection; over the per-address limit it is closed at once (4029)."""
        now = self.clock()
        cid = f"c{next(self._ids)}"
        conn = Connection(
            cid,
            sink,
            TokenBucket(self.config.rate_per_second, self.config.burst, now),
            Outbox(self.config.max_backlog_bytes),
            now,
        )
        self.conns[cid] = conn
        if ip is not None:
            if self._per_ip[ip] >= self.config.max_connections_per_ip:
                self.stats.errors[ErrorCode.TOO_MANY_CONNECTIONS.value] += 1
                self._close(conn, CloseCode.TOO_MANY_CONNECTIONS, "too many connections from this address")
                return conn
            conn.ip = ip
            self._per_ip[ip] += 1
        welcome = Welcome(
            server=__version__, conn=cid, time=now, limits=self._limits, auth=self.verifier is not None
        )
        self._private(conn, welcome)
        return conn

    def receive(self, conn: Connection, data: bytes) -> None:
        """One complete client frame. Every failure becomes a typed error to this sender only."""
        if self.admit(conn):
            self.request(conn, data)

    def admit(self, conn: Connection) -> bool:
        """Count one client frame against the connection's and its user's rate; False: drop it
        (the sender was told, or is being closed for flooding)."""
        if conn.closing or self.stopping:
            return False  # stopping: everything is being persisted; the 1001 that follows says why
        now = self.clock()
        self.stats.frames_in += 1
        verdict = conn.bucket.take(now)
        if verdict is not Verdict.OK:
            self._rate_limited(conn, verdict)
            return False
        if conn.identity is not None:  # and the user's budget, shared by all its connections
            user_bucket = self._user_buckets[conn.identity.user]
            verdict = user_bucket.take(now)
            if verdict is not Verdict.OK:
                self._rate_limited(conn, verdict)
                return False
        if not conn.bucket.excess:  # back under the rate: a later drop is told again
            conn.told_rate_limited = False
        return True

    def request(self, conn: Connection, data: bytes) -> None:
        """One native message, already admitted (a gateway translates one frame of its own
        protocol into requests and admits the frame once)."""
        if conn.closing or self.stopping:
            return
        now = self.clock()
        try:
            msg = decode_client(data, self.config.max_message_bytes)
        except ProtocolError as exc:
            self._refuse(conn, exc)
            return
        self.stats.messages_in[msg.__struct_config__.tag] += 1  # type: ignore[index]
        if type(msg) is TimeRequest:
            self._time(conn, msg, now)
            return
        if conn.queued or type(msg) is Join or type(msg) is Create:
            conn.queued += 1
            self.admission.submit(lambda: self._admitted(conn, msg))
            return
        self._handle(conn, msg, now)

    def _admitted(self, conn: Connection, msg: ClientMessage) -> None:
        """A request's turn came (see Admission)."""
        conn.queued -= 1
        if not conn.closing and not self.stopping:
            self._handle(conn, msg, self.clock())

    def _handle(self, conn: Connection, msg: ClientMessage, now: float) -> None:
        try:
            if self.verifier is not None and conn.identity is None and type(msg) is not Auth:
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first: send `auth` with a token")
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
        self.stats.closed += 1
        if conn.ip is not None:
            self._forget_one(self._per_ip, conn.ip)
        if conn.identity is not None and self._forget_one(self._per_user, conn.identity.user):
            self._user_buckets.pop(conn.identity.user, None)
        conn.closing = True
        conn.outbox.clear()
        self.stats.coalesced_drops += conn.outbox.coalesced_drops
        now = self.clock()
        for sid, pid in conn.sessions.items():
            members = self.members.get(sid)
            if members is not None and members.get(pid) is conn:
                del members[pid]
            session = self.sessions.get(sid)
            if session is not None and not self.stopping:
                self._publish(session, session.drop(pid, now))
                self._persist(session)
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
        if self.stopping:
            return
        now = self.clock()
        if self.verifier is not None and now - self._auth_checked_at >= 0.5:
            self._auth_checked_at = now
            self._check_tokens(now)
        for sid in list(self._watch):
            session = self.sessions.get(sid)
            if session is None:
                self._watch.discard(sid)
                continue
            self._publish(session, session.expire(now))
            self._persist(session)
            if session.participants:
                if all(p.dropped_at is None for p in session.participants.values()):
                    self._watch.discard(sid)
            elif session.empty_since is not None and now - session.empty_since >= self.config.session_ttl:
                self._end(session, now, "empty")
        for sid in list(self._counting):
            counted = self.sessions.get(sid)
            if counted is not None and (out := counted.count_out(now)) is not None:
                self._publish(counted, [out])
            if counted is None or not counted.count_dirty:
                self._counting.discard(sid)
        if self._snapshot_due:
            every = self.config.snapshot_interval
            for sid in list(self._snapshot_due):
                session = self.sessions.get(sid)
                if session is None:
                    del self._snapshot_due[sid]
                elif now - self._snapshot_at.get(sid, 0.0) >= every:
                    self._snapshot(session, now)
        if self._repair and now - self._repair_at >= self.config.rtc_state_repair:
            self._repair_at = now
            repair, self._repair = self._repair, set()
            for conn in repair:
                if not conn.closing and conn.outbox.deferred and not conn.dirty:
                    self._mark(conn)
        self.store.commit()

    def flush(self) -> None:
        """Send each dirty receiver everything it got this turn as one frame."""
        if self._commit_due:
            self._commit_due = False
            self.store.commit()
        if self._closing:
            closing, self._closing = self._closing, []
            for conn, code, reason in closing:
                self._finish_close(conn, code, reason)
        for sid in list(self._turn_state):
            self._send_merged(sid)
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, []
        cache: dict[tuple[bytes, ...], bytes] = {}
        stats = self.stats
        pool = self.send_pool
        batch: list[tuple[RawSink, bytes]] | None = [] if pool and len(dirty) >= pool.min_batch else None
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
            if batch is not None and getattr(conn.sink, "raw_fd", None) is not None:
                batch.append((conn.sink, frame))  # type: ignore[arg-type]
            else:
                conn.sink.send_frame(frame)
        if batch and pool is not None:
            for sink, frame in pool.send(batch):
                sink.send_frame(frame)  # type: ignore[attr-defined]
        if len(dirty) >= FANOUT_MEASURED:  # replies to a few joiners say nothing about the fan-out
            self.flush_took = time.perf_counter() - started

    # --- request handlers ------------------------------------------------------------------

    def _create(self, conn: Connection, msg: Create, now: float) -> None:
        self._check_room(conn)
        self._check_meta(msg.meta)
        if self._claim(conn) == "witness":
            raise ProtocolError(ErrorCode.FORBIDDEN, "a witness cannot create a session")
        sid = msg.settings.session_id
        if sid is None:
            sid = self._new_session_id()
        elif sid in self.sessions:
            raise ProtocolError(ErrorCode.SESSION_EXISTS, f"session {sid!r} already exists")
        if len(self.sessions) >= self.config.max_sessions:
            raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "the server is at its session limit")
        settings = msgspec.structs.replace(
            msg.settings, session_id=sid, public=msg.settings.public and not msg.settings.private
        )
        session = Session(sid, settings, now, self.config.session)
        self.ended.pop(sid, None)  # an ended session's id may be used again
        self._add_session(session)
        name, user = self._who(conn, msg.name)
        p, token, outs = session.add(
            name, "participant", msg.meta, conn.id, now, user, self._claim(conn) == "facilitator"
        )
        session.host, session.host_user = p.id, user
        log.info("session %s created by %s (public=%s)", sid, conn.id, settings.public)
        self._enter(conn, session, p, token, msg.rid, outs, None)

    def _join(self, conn: Connection, msg: Join, now: float) -> None:
        session = self.sessions.get(msg.session)
        if session is None:
            ended = self.ended.get(msg.session)
            if ended is not None:
                why = f"session {msg.session!r} has ended ({ended.reason})"
                raise ProtocolError(ErrorCode.SESSION_ENDED, why)
            raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"no session {msg.session!r}")
        if msg.session in conn.sessions:
            raise ProtocolError(ErrorCode.ALREADY_JOINED, "this connection is already in that session")
        self._check_room(conn)
        self._check_meta(msg.meta)
        name, user = self._who(conn, msg.name)
        session.admit(user, resuming=msg.resume is not None)
        if msg.resume is not None:
            held = session.holder(msg.resume)
            old = self.conns.get(held.conn or "") if held is not None else None
            p, outs = session.resume(msg.resume, conn.id, user)
            token = msg.resume
            if old is not None and old is not conn:  # e.g. a duplicated browser tab: tell the first
                old.sessions.pop(session.id, None)
                self._private(old, Left(session=session.id, reason="replaced"))
        else:
            claim = self._claim(conn)
            granted = session.admit_invite(msg.invite, self.store.secret, user, now)
            # A witness (by invite or by the app's role claim) only listens, whatever was asked.
            role = "observer" if "witness" in (claim, granted) else msg.role
            p, token, outs = session.add(name, role, msg.meta, conn.id, now, user, claim == "facilitator")
        self._enter(conn, session, p, token, msg.rid, outs, msg.last_seq)

    def _enter(
        self,
        conn: Connection,
        session: Session,
        p: Participant,
        token: str,
        rid: int | None,
        outs: list[Out],
        last_seq: int | None,
    ) -> None:
        """The joiner gets `joined` once its participant record is durable (a resume token that a
        crash could forget is no token), and becomes a member only then: everything the session
        sends before is in the snapshot, everything after reaches it."""
        sid = session.id
        conn.sessions[sid] = p.id

        def enter() -> None:
            if conn.closing or conn.sessions.get(sid) != p.id:
                return  # gone meanwhile, or resumed from another connection
            self.members[sid][p.id] = conn
            self._private(
                conn,
                Joined(
                    session=sid,
                    you=p.id,
                    token=token,
                    role=p.role,
                    leader=session.leader,
                    participants=session.roster_for(p),
                    state=session.snapshot(),
                    seq=session.released_seq,  # controls still waiting for the disk follow
                    settings=session.settings,
                    epoch=self.epoch,
                    host=session.host,
                    locked=session.locked,
                    media=list(session.media.values()),
                    count=session.count() if session.crowded else None,
                    rid=rid,
                ),
            )
            if last_seq is not None:
                for ctl in session.replay_after(last_seq):
                    self._private(conn, ctl)

        ticket = self._persist(session)
        if self.store.immediate:
            enter()
        else:
            self._hold(session, ticket, enter)
        self._publish(session, outs)

    def _leave(self, conn: Connection, msg: Leave, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        del conn.sessions[session.id]
        self.members[session.id].pop(pid, None)
        self._private(conn, Left(session=session.id, rid=msg.rid))
        self._publish(session, session.remove(pid, now))
        self._persist(session)
        self._watch.add(session.id)

    def _meta(self, conn: Connection, msg: UpdateMeta, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._check_meta(msg.meta)
        self._publish(session, session.update_meta(pid, msg.meta))
        self._persist(session)
        self._ack(conn, msg.rid)

    def _handover(self, conn: Connection, msg: Handover, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._publish(session, session.handover(pid, msg.to))
        self._persist(session)
        self._ack(conn, msg.rid)

    def _control(self, conn: Connection, msg: Control, now: float) -> None:
        """Sequenced at once, but acknowledged and sent to anyone only once durable: a control
        nobody saw can be lost in a crash without anyone noticing a gap."""
        session, pid = self._member(conn, msg.session)
        out, outs = session.control(pid, msg.event, msg.payload, msg.at, now)
        self._persist(session)

        def release() -> None:
            session.released_seq = out.seq
            self._send(session, outs)
            self._ack(conn, msg.rid, out.seq)

        if self.store.immediate:
            release()
            return
        ticket = self.store.append_control(out, self.config.session.history)
        self._commit_soon()
        self._hold(session, ticket, release)

    def _state_set(self, conn: Connection, msg: StateSet, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        self._publish(session, session.set_state(pid, msg.set, msg.at, now))
        self._note_state(session)
        self._ack(conn, msg.rid)

    def _signal(self, conn: Connection, msg: Signal, now: float) -> None:
        """Delivered to `to` only (a participant, or every participant of a user), never stored."""
        session, pid = self._member(conn, msg.session)
        targets = session.addressed(msg.to, pid)
        if not targets:
            raise ProtocolError(ErrorCode.INVALID_TARGET, f"no participant {msg.to!r} in this session")
        out = SignalOut(session=session.id, sender=pid, to=msg.to, signal=msg.signal)
        outs = [Out(out, to=t) for t in targets]
        self._after(session, lambda: self._send(session, outs))
        self._ack(conn, msg.rid)

    def _roster(self, conn: Connection, msg: RosterRequest, now: float) -> None:
        """A page of everyone (a large session shows only its roster): a view of this moment;
        the crowd's later comings and goings show only in the head count."""
        session, _ = self._member(conn, msg.session)
        page, after = session.roster_page(msg.after, msg.limit)
        reply = Roster(session=session.id, participants=page, count=session.count(), next=after, rid=msg.rid)
        self._private(conn, reply)

    # --- WebRTC signalling (the SFU is in server/sfu; the rules are the session's) -----------

    def _hub(self) -> MediaHub:
        if self.media is None:
            raise ProtocolError(ErrorCode.RTC_UNAVAILABLE, "WebRTC is off on this server; use the WebSocket")
        return self.media

    def _rtc_offer(self, conn: Connection, msg: RtcOffer, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        hub = self._hub()
        sid, rid = session.id, msg.rid

        def done(answer: str | None, why: str | None) -> None:
            member = self.members.get(sid, {}).get(pid)
            if member is None:
                return
            if answer is not None:
                self._private(member, RtcAnswer(session=sid, sdp=answer, rid=rid))
            else:
                self._refuse(member, ProtocolError(ErrorCode.INVALID_MESSAGE, why or "", rid, sid))

        from .sfu.hub import AtCapacity, TooSoon  # aiortc is imported only when WebRTC is on

        try:
            hub.offer(sid, pid, msg.sdp, done)
        except AtCapacity as exc:
            raise ProtocolError(ErrorCode.RTC_UNAVAILABLE, str(exc)) from None
        except TooSoon as exc:
            raise ProtocolError(ErrorCode.RATE_LIMITED, str(exc)) from None

    def _rtc_candidate(self, conn: Connection, msg: RtcCandidate, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        if not self._hub().candidate(session.id, pid, msg.candidate, msg.sdp_mid, msg.sdp_m_line_index):
            raise ProtocolError(ErrorCode.RTC_UNAVAILABLE, "no peer connection: send rtc_offer first")
        self._ack(conn, msg.rid)

    def _rtc_publish(self, conn: Connection, msg: RtcPublish, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        hub = self._hub()
        if msg.live and not hub.has_peer(session.id, pid):
            raise ProtocolError(ErrorCode.RTC_UNAVAILABLE, "no peer connection: send rtc_offer first")
        outs = session.publish(pid, msg.slot, msg.live)
        if outs:
            hub.set_publisher(session.id, msg.slot, pid if msg.live else None)
        self._publish(session, outs)
        self._ack(conn, msg.rid)

    def _rtc_close(self, conn: Connection, msg: RtcClose, now: float) -> None:
        """Idempotent: with no peer connection (or no WebRTC at all) there is nothing to close."""
        session, pid = self._member(conn, msg.session)
        if self.media is not None:
            self.media.close(session.id, pid)
        self._ack(conn, msg.rid)

    # hub -> node (HubListener)

    def media_peer(self, sid: str, pid: str, up: bool) -> None:
        """A peer connection came up or went down; gone for good (not replaced by a new offer),
        its slots stop: nobody else could go live on them meanwhile."""
        session = self.sessions.get(sid)
        if session is None:
            return
        outs = session.set_listening(pid, up)
        if not up and self.media is not None and not self.media.has_peer(sid, pid):
            for slot, m in list(session.media.items()):
                if m.publisher == pid:
                    self.media.set_publisher(sid, slot, None)
                    outs.extend(session.unpublish(slot))
        self._publish(session, outs)
        self.schedule_flush()

    def media_map(self, sid: str, slot: str, clock_map: ClockMap) -> None:
        session = self.sessions.get(sid)
        if session is not None:
            self._publish(session, session.media_map(slot, clock_map.rtp_ts, clock_map.at, clock_map.rate))
            self.schedule_flush()

    def _invite(self, conn: Connection, msg: CreateInvite, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        if not session.is_host(pid):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the session's host may invite")
        token, jti, exp = issue_invite(self.store.secret, session.id, msg.role, msg.ttl, now)
        self._private(conn, Invite(session.id, token, jti, msg.role, exp, rid=msg.rid))

    def _moderate(self, conn: Connection, msg: Moderate, now: float) -> None:
        session, pid = self._member(conn, msg.session)
        target = session.participants.get(msg.target or "")
        victim = self.conns.get(target.conn or "") if target is not None else None
        outs = session.moderate(pid, msg.action, msg.target, now)
        sid = session.id
        if msg.action == "end":
            self._ack(conn, msg.rid)
            self._send(session, [*outs, Out(Left(session=sid, reason="ended"))])
            for p in session.participants.values():
                member = self.conns.get(p.conn or "")
                if member is not None:
                    member.sessions.pop(sid, None)
            self._end(session, now, "ended by its host")
            return
        self._publish(session, outs)
        if msg.action == "remove":
            if victim is not None:
                victim.sessions.pop(sid, None)  # its requests fail from now on
            gone = msg.target or ""

            def let_go() -> None:  # no more deliveries to it, once its `left` went out
                self.members.get(sid, {}).pop(gone, None)

            self._after(session, let_go)
            self._watch.add(sid)
        self._persist(session)
        self._ack(conn, msg.rid)

    def _auth(self, conn: Connection, msg: Auth, now: float, retried: bool = False) -> None:
        """Verify a token and bind its user to this connection; a later `auth` refreshes it (same
        user only). A token signed by a key not yet known: fetch the key set once, then retry."""
        if self.verifier is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "this server takes no tokens (anonymous mode)")
        try:
            identity = self.verifier.verify(msg.token)
        except UnknownKey as exc:
            if retried or self.refresh_keys is None or not self.verifier.can_refresh():
                raise ProtocolError(ErrorCode.UNAUTHORIZED, f"unknown signing key {exc}") from None
            self.refresh_keys(lambda: self._auth_again(conn, msg))
            return
        if conn.identity is not None and identity.user != conn.identity.user:
            raise ProtocolError(ErrorCode.FORBIDDEN, "a connection's user cannot change; connect anew")
        if conn.identity is None:
            user = identity.user
            if self._per_user[user] >= self.config.max_connections_per_user:
                limit = self.config.max_connections_per_user
                raise ProtocolError(ErrorCode.TOO_MANY_CONNECTIONS, f"this user has {limit} connections open")
            self._per_user[user] += 1
            if user not in self._user_buckets:
                rate, burst = self.config.user_rate_per_second, self.config.user_burst
                self._user_buckets[user] = TokenBucket(rate, burst, now)
        conn.identity = identity
        self._ack(conn, msg.rid)

    def _auth_again(self, conn: Connection, msg: Auth) -> None:
        if conn.closing:
            return
        try:
            self._auth(conn, msg, self.clock(), retried=True)
        except ProtocolError as exc:
            exc.rid = msg.rid
            self._refuse(conn, exc)

    def _check_tokens(self, now: float) -> None:
        """Close connections whose token expired (4003) or that never sent one (4001)."""
        deadline = now - self.config.auth_timeout
        for conn in list(self.conns.values()):
            who = conn.identity
            if who is None:
                if conn.opened_at < deadline:
                    self._close(conn, CloseCode.UNAUTHORIZED, "authentication required: send `auth` first")
            elif who.expires is not None and who.expires <= now:
                self._close(conn, CloseCode.TOKEN_EXPIRED, "token expired; refresh it before it does")

    def _time(self, conn: Connection, msg: TimeRequest, t1: float) -> None:
        """Answered at once, outside the per-turn batch, so t2 is close to the real send time."""
        conn.sink.send_frame(encode(TimeReply(t0=msg.t0, t1=t1, t2=self.clock())))
        self.stats.frames_out += 1

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _forget_one(counts: Counter[str], key: str) -> bool:
        """One fewer under `key`; True when none is left (the key is dropped: bounded memory)."""
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]
            return True
        return False

    @staticmethod
    def _claim(conn: Connection) -> str | None:
        """The app's role for this user, from its token (facilitator / participant / witness)."""
        return conn.identity.role if conn.identity is not None else None

    @staticmethod
    def _who(conn: Connection, name: str) -> tuple[str, str | None]:
        """Display name and user of a new participant: a verified name claim wins."""
        who = conn.identity
        if who is None:
            return name, None
        return (who.name or name)[:64], who.user

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

    def _add_session(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.members[session.id] = {}
        self.backplane.subscribe(session.id, self._deliver)

    def _end(self, session: Session, now: float, reason: str) -> None:
        sid = session.id
        del self.sessions[sid]
        self.members.pop(sid, None)
        self.backplane.unsubscribe(sid)
        self._watch.discard(sid)
        self._held.pop(sid, None)
        self._snapshot_due.pop(sid, None)
        self._snapshot_at.pop(sid, None)
        if self.media is not None:
            self.media.end_session(sid)
        ended = Ended(sid, now, reason)
        self._remember_end(ended)
        self.store.end_session(ended)
        log.info("session %s ended (%s)", sid, reason)
        if self.on_session_end is not None:
            self.on_session_end(sid)

    def _remember_end(self, ended: Ended) -> None:
        self.ended[ended.id] = ended
        self.ended.move_to_end(ended.id)
        while len(self.ended) > self.config.max_ended_remembered:
            self.ended.popitem(last=False)

    # --- durability ------------------------------------------------------------------------

    def _persist(self, session: Session) -> int:
        """Hand what the session's rules changed to the store (written at the end of the turn);
        returns the ticket of the last write (0: nothing written)."""
        self._note_state(session)
        if self.store.immediate:
            session.record_dirty = False
            session.dirty.clear()
            session.gone.clear()
            return 0
        if not (session.record_dirty or session.dirty or session.gone):
            return 0
        store, sid = self.store, session.id
        ticket = 0
        if session.record_dirty:
            session.record_dirty = False
            ticket = store.put_session(session.record())
        for pid in session.gone:
            ticket = store.delete_participant(sid, pid)
        for pid in session.dirty:
            ticket = store.put_participant(sid, session.participants[pid].record())
        session.gone.clear()
        session.dirty.clear()
        self._commit_soon()
        return ticket

    def _note_state(self, session: Session) -> None:
        """The session's state changed: its snapshot is due (written by the tick, throttled)."""
        if session.state_dirty:
            session.state_dirty = False
            if not self.store.immediate:
                self._snapshot_due[session.id] = None

    def _snapshot(self, session: Session, now: float) -> None:
        self._snapshot_due.pop(session.id, None)
        self._snapshot_at[session.id] = now
        if not self.store.immediate:
            self.store.put_state(session.id, session.state.version, session.state.dump())

    def _commit_soon(self) -> None:
        if not self._commit_due and not self.store.immediate:
            self._commit_due = True
            self.schedule_flush()

    def _durable(self, ticket: int) -> None:
        """The store made every write up to `ticket` durable: release what waited for it."""
        for sid in list(self._held):
            queue = self._held[sid]
            session = self.sessions.get(sid)
            while queue and queue[0].ticket <= ticket:
                item = queue.popleft()
                if session is not None:
                    item.send()
            if not queue:
                del self._held[sid]

    def _hold(self, session: Session, ticket: int, send: Callable[[], None]) -> None:
        queue = self._held.get(session.id)
        if queue is None:
            queue = self._held[session.id] = deque()
        queue.append(_Held(ticket, send))

    def _publish(self, session: Session, outs: list[Out]) -> None:
        """Send now, or after the session's writes still waiting for the disk (keeps order)."""
        if session.count_dirty:
            self._counting.add(session.id)
        if outs:
            if self.media is not None and (session.media or session.id in self.media.peers):
                outs = self._media_follow(session, outs)
            self._after(session, lambda: self._send(session, outs))

    def _media_follow(self, session: Session, outs: list[Out]) -> list[Out]:
        """Leadership or membership changed: a publisher who may no longer publish stops, and a
        participant who left loses its peer connection."""
        assert self.media is not None
        changed = False
        for out in outs:
            kind = type(out.msg)
            if kind is Presence and out.msg.leaves:  # type: ignore[attr-defined]
                for pid in out.msg.leaves:  # type: ignore[attr-defined]
                    self.media.close(session.id, pid)
                changed = True
            elif kind is not StateOut and kind is not ControlOut:
                changed = True
        if not changed or not session.media:
            return outs
        extra: list[Out] = []
        for slot in session.media_rights():
            self.media.set_publisher(session.id, slot, None)
            extra.extend(session.unpublish(slot))
        return outs + extra if extra else outs

    def _after(self, session: Session, action: Callable[[], None]) -> None:
        """Run `action` now, or in order after the session's writes still waiting for the disk."""
        if session.id in self._held:
            self._hold(session, 0, action)
        else:
            action()

    def _send(self, session: Session, outs: list[Out]) -> None:
        sid = session.id
        for out in outs:
            msg = out.msg
            if type(msg) is StateOut and out.to is None and out.exclude is None and session.crowded:
                self._count_rides(session)
                if sid in self._turn_state or self.flush_took > self.config.merge_after:
                    self._merge_state(sid, msg)
                    continue
            if sid in self._turn_state:
                self._send_merged(sid)  # it came first
            self.backplane.publish(
                sid, Broadcast(encode(msg), out.to, out.exclude, msg if type(msg) is StateOut else None)
            )

    def _count_rides(self, session: Session) -> None:
        """State is going to everyone in a crowded session: a due head count goes with it, in
        the same frame (Session.count_out)."""
        now = self.clock()
        session.streamed_at = now
        if session.count_dirty and (out := session.count_out(now, riding=True)) is not None:
            msg = out.msg
            self.backplane.publish(session.id, Broadcast(encode(msg), None, None, None))

    def _merge_state(self, sid: str, msg: StateOut) -> None:
        """While the server is behind (its last flush took longer than `merge_after`), a large
        session's state goes out once per turn: what one writer set within a turn is merged
        into one update (newest value per path, `coalesced`), encoded once, and each receiver
        gets one write per turn instead of one per update, as a congested receiver does (see
        Outbox). Otherwise every update goes out as it came."""
        pending = self._turn_state.get(sid)
        if pending is not None and pending[0].sender != msg.sender:
            self._send_merged(sid)
            pending = None
        if pending is None:
            if not self._dirty and not self._turn_state:
                self.schedule_flush()
            self._turn_state[sid] = [msg]
        else:
            pending.append(msg)

    def _send_merged(self, sid: str) -> None:
        updates = self._turn_state.pop(sid)
        msg = updates[-1]
        if len(updates) > 1:
            values: dict[str, Any] = {}
            for u in updates:
                values.update(u.set)
            self.stats.coalesced_drops += sum(len(u.set) for u in updates) - len(values)
            at = max(u.at for u in updates)
            msg = StateOut(session=sid, v=msg.v, at=at, sender=msg.sender, set=values, coalesced=True)
        self.backplane.publish(sid, Broadcast(encode(msg), None, None, msg))

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
            if item.state is not None and self.media is not None and self.media.state_channels(sid):
                targets = self._by_channel(sid, members, skip, item.data, item.state)
            elif skip:
                targets = [c for pid, c in members.items() if pid != skip]
            else:
                targets = members.values()
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

    def _by_channel(
        self, sid: str, members: dict[str, Connection], skip: str | None, data: bytes, state: StateOut
    ) -> list[Connection]:
        """Send state over the data channels of those who have one (unordered, no retransmit:
        no head-of-line blocking); their WebSocket gets a coalesced copy a little later, which
        repairs a loss. Returns the receivers left for the WebSocket path."""
        assert self.media is not None
        channels = self.media.state_channels(sid) or {}
        text = data.decode()
        rest: list[Connection] = []
        for pid, conn in members.items():
            if pid == skip:
                continue
            peer = channels.get(pid)
            if peer is not None and not conn.closing and self.media.send_state(peer, text):
                conn.outbox.defer_state(state)
                self._repair.add(conn)
            else:
                rest.append(conn)
        return rest

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
