"""One session's rules, free of I/O: presence, leadership, ordered control log and state.

Every method takes the current server time explicitly and returns the messages to send
(`Out`), so the whole lifecycle (grace periods, failover, expiry) runs in tests with a
fake clock. The node turns `Out`s into encoded broadcasts.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..auth.invites import check as check_invite
from ..engine.state import PARTICIPANT_ROOT, StateDoc
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import (
    VALIDATED_CONTROL_EVENTS,
    ControlOut,
    Count,
    JoinRole,
    Leader,
    Left,
    Media,
    MediaSlot,
    Moderated,
    ParticipantInfo,
    Presence,
    Role,
    SessionSettings,
    Snapshot,
    StateOut,
)
from .store import ParticipantRecord, RecoveredSession, SessionRecord, hash_token

SERVER_ID = "server"


@dataclass(slots=True)
class Out:
    """A message for everyone in the session (`to=None`), minus `exclude`, or for one participant."""

    msg: msgspec.Struct
    to: str | None = None
    exclude: str | None = None


@dataclass
class Participant:
    id: str
    name: str
    role: Role
    meta: dict[str, Any]
    joined_at: float
    order: int  # join order: the longest-present participant has the smallest
    token_hash: str  # the resume token itself is only ever held by the client
    conn: str | None  # connection id while connected, None during the grace period
    dropped_at: float | None = None
    grace_until: float | None = None  # leaves then unless it resumes
    user: str | None = None  # the verified user it belongs to (None: anonymous)
    facilitator: bool = False  # leads first: named by the host, or by the user's role claim
    live: tuple[str, ...] = ()  # media slots it publishes (not persisted: peer connections are not)
    listening: bool = False  # its peer connection to the SFU is up

    def record(self) -> ParticipantRecord:
        return ParticipantRecord(
            self.id,
            self.name,
            self.role,
            self.meta,
            self.joined_at,
            self.order,
            self.token_hash,
            self.dropped_at,
            self.grace_until,
            self.user,
            self.facilitator,
        )

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(
            id=self.id,
            name=self.name,
            role=self.role,
            joined_at=self.joined_at,
            meta=self.meta,
            connected=self.conn is not None,
            facilitator=self.facilitator,
            live=list(self.live),
            listening=self.listening,
        )


@dataclass
class SessionLimits:
    grace_period: float = 5.0  # seconds a dropped participant may resume; then leave/failover
    restart_grace: float = 30.0  # the same for participants still connected when the server stopped
    max_clock_skew: float = 30.0  # accepted |at - server now| for stamped messages
    history: int = 1024  # control messages kept for replay on resume
    max_state_keys: int = 4096
    # Beyond this many, a participant joins the crowd: counted, not announced one by one (its
    # join would cost every member a message: N^2 while a ceremony fills up). See `Count`.
    roster_limit: int = 100
    presence_interval: float = 0.5  # the crowd's head count goes out at most this often


@dataclass
class Session:
    id: str
    settings: SessionSettings
    created_at: float
    limits: SessionLimits = field(default_factory=SessionLimits)
    participants: dict[str, Participant] = field(default_factory=dict)
    leader: str | None = None
    seq: int = 0
    released_seq: int = 0  # the last control sent out (durable); replay stops there
    empty_since: float | None = None
    history: deque[ControlOut] = field(init=False)
    state: StateDoc = field(init=False)
    _order: int = 0
    # What changed since the node last persisted it (drained by the node, which owns the I/O).
    dirty: set[str] = field(default_factory=set)  # participant ids whose record changed
    gone: set[str] = field(default_factory=set)  # participant ids removed
    record_dirty: bool = True  # settings, leader, join order, empty_since
    state_dirty: bool = False
    _tokens: dict[str, str] = field(default_factory=dict)  # token hash -> participant id
    host: str | None = None  # the creator's participant id: it moderates
    host_user: str | None = None  # the creator's verified user: host again on any rejoin
    locked: bool = False  # no new joins (resumes still work)
    barred: set[str] = field(default_factory=set)  # verified users the host removed
    revoked: dict[str, float] = field(default_factory=dict)  # invite id -> expiry, until then
    media: dict[str, MediaSlot] = field(default_factory=dict)  # live slot -> publisher and clock map
    # The roster: participants announced one by one (the rest is the crowd, only counted).
    shown: set[str] = field(default_factory=set)
    count_dirty: bool = False  # the head count changed since it last went out
    _roster: list[ParticipantInfo] | None = None  # the roster's infos, for `joined` (cached)
    _crowd_told: bool = False  # the last head count sent had a crowd
    _count_at: float = float("-inf")
    # When the node last sent this session's state to everyone (set by the node): while it
    # streams, the head count waits for such a send to ride on (see `count_out`).
    streamed_at: float = float("-inf")
    _connected: int = 0  # kept as they change: counting 10,000 on every join would cost O(N)
    _observers: int = 0

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.limits.history)
        self.state = StateDoc(max_keys=self.limits.max_state_keys)
        self.empty_since = self.created_at

    # --- durability ------------------------------------------------------------------------

    def record(self) -> SessionRecord:
        return SessionRecord(
            self.id,
            self.settings,
            self.created_at,
            self.leader,
            self._order,
            self.empty_since,
            self.host,
            self.host_user,
            self.locked,
            sorted(self.barred),
            dict(self.revoked),
        )

    @classmethod
    def restore(
        cls, saved: RecoveredSession, limits: SessionLimits, now: float, stopped_at: float | None
    ) -> Session:
        """Rebuild a session after a restart: nobody is connected; everyone who was gets
        `restart_grace` from now to come back, and who was already in a grace period keeps
        what was left of it when the server stopped."""
        rec = saved.record
        s = cls(rec.id, rec.settings, rec.created_at, limits)
        s.leader, s._order, s.empty_since = rec.leader, rec.order, rec.empty_since
        s.host, s.host_user, s.locked, s.barred = rec.host, rec.host_user, rec.locked, set(rec.barred)
        s.revoked = dict(rec.revoked)
        s.seq = s.released_seq = saved.seq
        s.history.extend(saved.controls)
        if saved.state is not None:
            s.state = StateDoc.load(saved.state, limits.max_state_keys)
        stopped = now if stopped_at is None else stopped_at
        for r in sorted(saved.participants, key=lambda r: r.order):
            if r.grace_until is None:
                grace_until = now + limits.restart_grace
            else:
                grace_until = now + max(0.0, r.grace_until - stopped)
            p = Participant(
                r.id,
                r.name,
                r.role,
                r.meta,
                r.joined_at,
                r.order,
                r.token_hash,
                None,
                now,
                grace_until,
                r.user,
                r.facilitator,
            )
            s.participants[p.id] = p
            s._tokens[p.token_hash] = p.id
            s._observers += p.role == "observer"
            s._show(p)
        s.dirty = set(s.participants)
        return s

    def all_dropped(self, now: float) -> None:
        """The server is stopping: everyone connected is dropped now (persisted, not announced)."""
        for p in self.participants.values():
            if p.conn is not None:
                p.conn, p.dropped_at, p.grace_until = None, now, None
                self.dirty.add(p.id)
        self._roster = None
        self._connected = 0

    # --- membership ------------------------------------------------------------------------

    def add(
        self,
        name: str,
        role: JoinRole | Role,
        meta: dict[str, Any],
        conn: str,
        now: float,
        user: str | None = None,
        facilitator: bool = False,
    ) -> tuple[Participant, str, list[Out]]:
        """A new participant and its resume token; it leads if the session has no leader and it
        is not an observer."""
        pid = self._new_id()
        self._order += 1
        outs: list[Out] = []
        steward = facilitator or (user is not None and user == self.host_user)
        claim = role != "observer" and self.leader is None and (steward or not self._stewards())
        token = secrets.token_urlsafe(18)
        digest = hash_token(token)
        p = Participant(
            pid,
            name,
            "leader" if claim else role,
            meta,
            now,
            self._order,
            digest,
            conn,
            user=user,
            facilitator=facilitator,
        )
        self.participants[pid] = p
        self._tokens[digest] = pid
        self._connected += 1
        self._observers += p.role == "observer"
        self.empty_since = None
        self.dirty.add(pid)
        self.record_dirty = True
        if claim:
            self.leader = pid
        self.count_dirty = True
        if self._show(p):
            outs.append(Out(Presence(session=self.id, joins=[p.info()]), exclude=pid))
        if claim and len(self.participants) > 1:
            outs.append(Out(Leader(session=self.id, leader=pid, reason="claimed")))
        return p, token, outs

    def resume(self, token: str, conn: str, user: str | None = None) -> tuple[Participant, list[Out]]:
        """Re-attach a participant (same id, role, area) that dropped or moved connection.

        Looked up by the token's hash: the server keeps no token it could leak. A participant of
        a verified user resumes only for that user (a stolen resume token is not enough)."""
        p = self.holder(token)
        if p is None:
            raise ProtocolError(ErrorCode.RESUME_FAILED, "resume token unknown or expired")
        if p.user is not None and p.user != user:
            raise ProtocolError(ErrorCode.FORBIDDEN, "that participant belongs to another user")
        was_connected = p.conn is not None
        self._connected += not was_connected
        p.conn, p.dropped_at, p.grace_until = conn, None, None
        self.dirty.add(p.id)
        self.count_dirty = True
        return p, [] if was_connected else self._told(p)

    def reissue(self, user: str, which: Callable[[Participant], bool]) -> str | None:
        """A fresh resume token for this verified user's most recently dropped participant among
        `which`, if it has one in its grace period (the old token stops working). For clients
        that keep no token (the Realtime gateway): the user is proven by its JWT, which is what
        a resume of a verified participant requires anyway, and a participant still connected is
        never taken this way."""
        dropped = [p for p in self.participants.values() if p.user == user and p.conn is None and which(p)]
        if not dropped:
            return None
        p = max(dropped, key=lambda q: q.dropped_at or 0.0)
        token = secrets.token_urlsafe(18)
        self._tokens.pop(p.token_hash, None)
        p.token_hash = hash_token(token)
        self._tokens[p.token_hash] = p.id
        self.dirty.add(p.id)
        return token

    def holder(self, token: str) -> Participant | None:
        """Whose resume token this is (looked up by its hash), if anyone's."""
        return self.participants.get(self._tokens.get(hash_token(token), ""))

    def drop(self, pid: str, now: float) -> list[Out]:
        """Connection lost: keep the participant for the grace period, shown as disconnected."""
        p = self.participants.get(pid)
        if p is None or p.conn is None:
            return []
        p.conn, p.dropped_at, p.grace_until = None, now, now + self.limits.grace_period
        self._connected -= 1
        self.dirty.add(pid)
        self.count_dirty = True
        return self._told(p)

    def remove(self, pid: str, now: float) -> list[Out]:
        """Participant gone for good (left, or grace expired): presence diff, area cleared, failover."""
        p = self.participants.pop(pid, None)
        if p is None:
            return []
        self._tokens.pop(p.token_hash, None)
        self._connected -= p.conn is not None
        self._observers -= p.role == "observer"
        self.dirty.discard(pid)
        self.gone.add(pid)
        self.count_dirty = True
        outs: list[Out] = []
        if pid in self.shown:
            self.shown.discard(pid)
            self._roster = None
            outs.append(Out(Presence(session=self.id, leaves=[pid])))
            outs.extend(self._fill_roster())
        cleared = self.state.remove_area(f"{PARTICIPANT_ROOT}.{pid}")
        if cleared:
            self.state_dirty = True
            outs.append(
                Out(StateOut(session=self.id, v=self.state.version, at=now, sender=SERVER_ID, set=cleared))
            )
        if self.leader == pid:
            outs.extend(self._promote(previous=pid))
        if not self.participants:
            self.empty_since = now
            self.record_dirty = True
        return outs

    def expire(self, now: float) -> list[Out]:
        """Remove participants whose grace period has run out."""
        outs: list[Out] = []
        late = [
            p.id for p in self.participants.values() if p.grace_until is not None and now >= p.grace_until
        ]
        for pid in late:
            outs.extend(self.remove(pid, now))
        return outs

    def _promote(self, previous: str) -> list[Out]:
        """Leader gone: the longest-present connected host or facilitator leads; if none is
        there, the longest-present connected participant (never an observer)."""
        candidates = [p for p in self.participants.values() if p.role == "participant" and p.conn]
        candidates = [p for p in candidates if self._steward(p)] or candidates
        self.record_dirty = True
        if not candidates:
            self.leader = None
            return [Out(Leader(session=self.id, leader=None, reason="vacant", previous=previous))]
        heir = min(candidates, key=lambda p: p.order)
        heir.role = "leader"
        self.leader = heir.id
        self.dirty.add(heir.id)
        return [
            Out(Leader(session=self.id, leader=heir.id, reason="failover", previous=previous)),
            *self._told(heir),
        ]

    # --- requests --------------------------------------------------------------------------

    def addressed(self, to: str, sender: str) -> list[str]:
        """Who a `signal` to `to` reaches: that participant, or every participant of the user
        `to` (its verified user, else the `user_id` its meta claims), never the sender."""
        if to in self.participants:
            return [to] if to != sender else []
        return [
            p.id
            for p in self.participants.values()
            if p.id != sender and (p.user == to or (p.user is None and p.meta.get("user_id") == to))
        ]

    def admit(self, user: str | None, resuming: bool) -> None:
        """May this user come in? A removed user never again; while locked, only those coming
        back (resume) and the host's user."""
        if user is not None and user in self.barred:
            raise ProtocolError(ErrorCode.FORBIDDEN, "you were removed from this session")
        if self.locked and not resuming and (user is None or user != self.host_user):
            raise ProtocolError(ErrorCode.SESSION_LOCKED, "the host locked this session")

    def _steward(self, p: Participant) -> bool:
        """The host and facilitators lead first."""
        return p.facilitator or p.id == self.host or (self.host_user is not None and p.user == self.host_user)

    def _stewards(self) -> bool:
        """A host or facilitator is connected (and could lead): participants do not claim."""
        return any(p.conn and p.role != "observer" and self._steward(p) for p in self.participants.values())

    def is_host(self, pid: str) -> bool:
        p = self.participants.get(pid)
        if p is None:
            return False
        return pid == self.host or (self.host_user is not None and p.user == self.host_user)

    def moderate(self, pid: str, action: str, target: str | None, now: float) -> list[Out]:
        """The host removes someone (its user barred), locks or unlocks the session; `end` is
        only checked here (the node ends the session). Everyone is told (`moderated`)."""
        if not self.is_host(pid):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the session's host may do this")
        told = Out(Moderated(session=self.id, action=action, by=pid, target=target))  # type: ignore[arg-type]
        if action == "remove":
            victim = self.participants.get(target or "")
            if victim is None or target == pid:
                raise ProtocolError(
                    ErrorCode.INVALID_TARGET, "remove needs another participant of this session"
                )
            if victim.user is not None:
                self.barred.add(victim.user)
            self.record_dirty = True
            return [
                Out(Left(session=self.id, reason="removed"), to=victim.id),
                told,
                *self.remove(victim.id, now),
            ]
        if action in ("lock", "unlock"):
            self.locked = action == "lock"
            self.record_dirty = True
        if action in ("facilitator", "unfacilitator"):
            named = self.participants.get(target or "")
            if named is None or named.role == "observer":
                raise ProtocolError(
                    ErrorCode.INVALID_TARGET, "a facilitator is a participant of this session"
                )
            named.facilitator = action == "facilitator"
            self.dirty.add(named.id)
            return [told, *self._told(named)]
        if action == "revoke":
            if not target:
                raise ProtocolError(ErrorCode.INVALID_TARGET, "revoke needs the invite's id as target")
            self.revoked = {j: exp for j, exp in self.revoked.items() if exp > now}  # forget the expired
            self.revoked[target] = now + 30 * 24 * 3600.0  # an invite lives 30 days at most
            self.record_dirty = True
        return [told]

    def admit_invite(self, invite: str | None, secret: bytes, user: str | None, now: float) -> str | None:
        """A private session is joined with a valid invite to it (the host's user needs none);
        returns the role the invite grants (None: not private, or the host)."""
        if not self.settings.private or (user is not None and user == self.host_user):
            return None
        if invite is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "a private session: join with an invite")
        jti, role, _ = check_invite(secret, invite, self.id, now)
        if jti in self.revoked:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this invite was revoked")
        return role

    def update_meta(self, pid: str, meta: dict[str, Any]) -> list[Out]:
        p = self.participants[pid]
        p.meta = meta
        self.dirty.add(pid)
        return self._told(p)

    def handover(self, pid: str, to: str) -> list[Out]:
        self._require_leader(pid)
        heir = self.participants.get(to)
        if heir is None or heir.conn is None or heir.role != "participant":
            raise ProtocolError(ErrorCode.INVALID_TARGET, "handover needs a connected participant")
        old = self.participants[pid]
        old.role, heir.role = "participant", "leader"
        self.leader = to
        self.dirty.update((pid, to))
        self.record_dirty = True
        return [
            Out(Leader(session=self.id, leader=to, reason="handover", previous=pid)),
            *self._told(old, heir),
        ]

    def control(
        self,
        pid: str,
        event: str,
        payload: Any,
        at: float | None,
        now: float,
    ) -> tuple[ControlOut, list[Out]]:
        """Leader-only, totally ordered: the next seq, kept in history, sent to everyone."""
        self._require_leader(pid)
        at = self._check_time(at, now)
        schema = VALIDATED_CONTROL_EVENTS.get(event)
        if schema is not None:
            try:
                payload = msgspec.to_builtins(msgspec.convert(payload, schema))
            except msgspec.ValidationError as exc:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{event} payload: {exc}") from None
        if event == "playout_delay":  # late joiners must learn the session's current D
            self.settings = msgspec.structs.replace(self.settings, playout_delay=payload["delay"])
            self.record_dirty = True
        self.seq += 1
        msg = ControlOut(session=self.id, seq=self.seq, at=at, event=event, sender=pid, payload=payload)
        self.history.append(msg)
        return msg, [Out(msg)]

    def set_state(self, pid: str, changes: Mapping[str, Any], at: float, now: float) -> list[Out]:
        """Validate the whole update, merge it last-writer-wins, broadcast what won."""
        p = self.participants[pid]
        if p.role == "observer":
            raise ProtocolError(ErrorCode.FORBIDDEN, "observers cannot write state")
        self._check_time(at, now)
        self.state.validate(changes, pid, p.role == "leader")
        won = self.state.apply(changes, at, pid)
        if not won:
            return []
        self.state_dirty = True
        return [Out(StateOut(session=self.id, v=self.state.version, at=at, sender=pid, set=won))]

    # --- media (the SFU's rules; the node tells the hub) ------------------------------------

    def may_publish(self, pid: str) -> bool:
        p = self.participants.get(pid)
        return p is not None and p.role != "observer" and (p.role == "leader" or p.facilitator)

    def publish(self, pid: str, slot: str, live: bool) -> list[Out]:
        """Go live on a slot (the leader or a facilitator; one publisher per slot), or stop."""
        current = self.media.get(slot)
        if not live:
            return self._unpublish(slot) if current is not None and current.publisher == pid else []
        if not self.may_publish(pid):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the leader or a facilitator may go live")
        if current is not None:
            if current.publisher == pid:
                return []
            raise ProtocolError(ErrorCode.INVALID_TARGET, f"{slot} is already live by {current.publisher}")
        self.media[slot] = MediaSlot(slot=slot, publisher=pid)
        p = self.participants[pid]
        p.live = tuple(sorted((*p.live, slot)))
        return [Out(self.media_message()), *self._told(p)]

    def media_map(self, slot: str, rtp_ts: int, at: float, rate: float) -> list[Out]:
        current = self.media.get(slot)
        if current is None:
            return []
        self.media[slot] = MediaSlot(slot=slot, publisher=current.publisher, rtp_ts=rtp_ts, at=at, rate=rate)
        return [Out(self.media_message())]

    def set_listening(self, pid: str, up: bool) -> list[Out]:
        p = self.participants.get(pid)
        if p is None or p.listening == up:
            return []
        p.listening = up
        return self._told(p)

    def media_rights(self) -> list[str]:
        """Slots whose publisher is gone or may no longer publish (lost the lead, left)."""
        return [slot for slot, m in self.media.items() if not self.may_publish(m.publisher)]

    def _unpublish(self, slot: str) -> list[Out]:
        m = self.media.pop(slot)
        outs = [Out(self.media_message())]
        p = self.participants.get(m.publisher)
        if p is not None:
            p.live = tuple(s for s in p.live if s != slot)
            outs.extend(self._told(p))
        return outs

    def unpublish(self, slot: str) -> list[Out]:
        return self._unpublish(slot) if slot in self.media else []

    def media_message(self) -> Media:
        return Media(session=self.id, slots=list(self.media.values()))

    # --- presence at scale -----------------------------------------------------------------

    def _notable(self, p: Participant) -> bool:
        """Always on the roster: who leads, hosts, facilitates or publishes."""
        return p.role == "leader" or p.facilitator or p.id == self.host or bool(p.live)

    def _show(self, p: Participant) -> bool:
        """Put an arriving participant on the roster if there is room (or it is notable)."""
        if len(self.shown) < self.limits.roster_limit or self._notable(p):
            self.shown.add(p.id)
            self._roster = None
            return True
        return False

    def _told(self, *changed: Participant) -> list[Out]:
        """Presence for participants whose info changed: a roster member's goes to everyone; a
        crowd member who became notable joins the roster; any other crowd member is told only
        itself (the others see the head count)."""
        updates = [p.info() for p in changed if p.id in self.shown]
        joins = [p.info() for p in changed if p.id not in self.shown and self._notable(p)]
        outs: list[Out] = []
        if updates or joins:
            self._roster = None
            self.shown.update(p.id for p in joins)
            outs.append(Out(Presence(session=self.id, joins=joins, updates=updates)))
        for p in changed:
            if p.id not in self.shown:
                self.count_dirty = True
                outs.append(Out(Presence(session=self.id, updates=[p.info()]), to=p.id))
        return outs

    def _fill_roster(self) -> list[Out]:
        """A roster member left: the longest-present crowd member takes its place."""
        if len(self.shown) >= self.limits.roster_limit or len(self.shown) >= len(self.participants):
            return []
        # The roster is mostly the first arrivals, so the first crowd member is found early.
        heir = next(p for p in self.participants.values() if p.id not in self.shown)
        self.shown.add(heir.id)
        return [Out(Presence(session=self.id, joins=[heir.info()]))]

    @property
    def crowded(self) -> bool:
        """Some participants are not on the roster (only counted)."""
        return len(self.participants) > len(self.shown)

    def count(self) -> Count:
        return Count(
            total=len(self.participants),
            connected=self._connected,
            observers=self._observers,
            listed=len(self.shown),
        )

    def count_out(self, now: float, riding: bool = False) -> Out | None:
        """The head count, if it changed, at most every `presence_interval`, while there is a
        crowd (and once more when the crowd is gone).

        `riding`: the node is about to send state to everyone, so a count sent now joins the
        same frame and costs no write of its own. A count going out alone is one more write
        per member (10,000 at a ceremony, 56 ms on the benchmark machine; twice a second in a
        join storm). So while state streams (sent to everyone within the last interval) a due
        count waits up to one more interval for a ride, and goes alone only after that."""
        if not self.count_dirty:
            return None
        due = self.limits.presence_interval
        if not riding and now - self.streamed_at < due:
            due *= 2
        if now - self._count_at < due:
            return None
        self.count_dirty = False
        crowded = self.crowded
        if not crowded and not self._crowd_told:
            return None
        self._crowd_told, self._count_at = crowded, now
        return Out(Presence(session=self.id, count=self.count()))

    def roster_for(self, p: Participant) -> list[ParticipantInfo]:
        """What a joiner is shown: the roster (cached: in a join storm it is the same for all)
        and itself."""
        if self._roster is None:
            self._roster = [q.info() for q in self.participants.values() if q.id in self.shown]
        return self._roster if p.id in self.shown else [*self._roster, p.info()]

    def roster_page(self, after: int | None, limit: int) -> tuple[list[ParticipantInfo], int | None]:
        """Participants in join order after the cursor `after` (a join order); and the cursor of
        the next page, if there is one."""
        page: list[ParticipantInfo] = []
        last = -1
        for p in self.participants.values():
            if after is not None and p.order <= after:
                continue
            if len(page) == limit:
                return page, last
            page.append(p.info())
            last = p.order
        return page, None

    # --- views -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(v=self.state.version, values=dict(self.state.values))

    def replay_after(self, seq: int) -> list[ControlOut]:
        """Controls after `seq` that were already sent out (a held one reaches the joiner when
        it is released, like everyone else's)."""
        top = self.released_seq
        return [m for m in self.history if seq < m.seq <= top]

    def participant_for_conn(self, conn: str) -> Participant | None:
        return next((p for p in self.participants.values() if p.conn == conn), None)

    def _require_leader(self, pid: str) -> None:
        if pid != self.leader:
            raise ProtocolError(ErrorCode.NOT_LEADER, "only the session leader may do this")

    def _check_time(self, at: float | None, now: float) -> float:
        if at is None:
            return now
        if abs(at - now) > self.limits.max_clock_skew:
            raise ProtocolError(ErrorCode.BAD_TIMESTAMP, f"`at` is {at - now:+.3f} s from server time")
        return at

    def _new_id(self) -> str:
        while True:
            pid = "p" + secrets.token_hex(4)
            if pid not in self.participants:
                return pid
