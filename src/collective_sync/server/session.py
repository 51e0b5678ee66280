"""One session's rules, free of I/O: presence, leadership, ordered control log and state.

Every method takes the current server time explicitly and returns the messages to send
(`Out`), so the whole lifecycle (grace periods, failover, expiry) runs in tests with a
fake clock. The node turns `Out`s into encoded broadcasts.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..engine.state import PARTICIPANT_ROOT, StateDoc
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import (
    VALIDATED_CONTROL_EVENTS,
    ControlOut,
    JoinRole,
    Leader,
    ParticipantInfo,
    Presence,
    Role,
    SessionSettings,
    Snapshot,
    StateOut,
)

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
    token: str
    conn: str | None  # connection id while connected, None during the grace period
    dropped_at: float | None = None

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(
            id=self.id,
            name=self.name,
            role=self.role,
            joined_at=self.joined_at,
            meta=self.meta,
            connected=self.conn is not None,
        )


@dataclass
class SessionLimits:
    grace_period: float = 5.0  # seconds a dropped participant may resume; then leave/failover
    max_clock_skew: float = 30.0  # accepted |at - server now| for stamped messages
    history: int = 1024  # control messages kept for replay on resume
    max_state_keys: int = 4096


@dataclass
class Session:
    id: str
    settings: SessionSettings
    created_at: float
    limits: SessionLimits = field(default_factory=SessionLimits)
    participants: dict[str, Participant] = field(default_factory=dict)
    leader: str | None = None
    seq: int = 0
    empty_since: float | None = None
    history: deque[ControlOut] = field(init=False)
    state: StateDoc = field(init=False)
    _order: int = 0

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.limits.history)
        self.state = StateDoc(max_keys=self.limits.max_state_keys)
        self.empty_since = self.created_at

    # --- membership ------------------------------------------------------------------------

    def add(
        self,
        name: str,
        role: JoinRole | Role,
        meta: dict[str, Any],
        conn: str,
        now: float,
    ) -> tuple[Participant, list[Out]]:
        """A new participant; it leads if the session has no leader and it is not an observer."""
        pid = self._new_id()
        self._order += 1
        outs: list[Out] = []
        claim = role != "observer" and self.leader is None
        p = Participant(
            pid, name, "leader" if claim else role, meta, now, self._order, secrets.token_urlsafe(18), conn
        )
        self.participants[pid] = p
        self.empty_since = None
        outs.append(Out(Presence(session=self.id, joins=[p.info()]), exclude=pid))
        if claim:
            self.leader = pid
            if len(self.participants) > 1:
                outs.append(Out(Leader(session=self.id, leader=pid, reason="claimed")))
        return p, outs

    def resume(self, token: str, conn: str) -> tuple[Participant, list[Out]]:
        """Re-attach a participant (same id, role, area) that dropped or moved connection."""
        given = token.encode()  # compare_digest refuses non-ASCII str; bytes compare any token
        for p in self.participants.values():
            if secrets.compare_digest(p.token.encode(), given):
                was_connected = p.conn is not None
                p.conn, p.dropped_at = conn, None
                outs = [] if was_connected else [Out(Presence(session=self.id, updates=[p.info()]))]
                return p, outs
        raise ProtocolError(ErrorCode.RESUME_FAILED, "resume token unknown or expired")

    def drop(self, pid: str, now: float) -> list[Out]:
        """Connection lost: keep the participant for the grace period, shown as disconnected."""
        p = self.participants.get(pid)
        if p is None or p.conn is None:
            return []
        p.conn, p.dropped_at = None, now
        return [Out(Presence(session=self.id, updates=[p.info()]))]

    def remove(self, pid: str, now: float) -> list[Out]:
        """Participant gone for good (left, or grace expired): presence diff, area cleared, failover."""
        p = self.participants.pop(pid, None)
        if p is None:
            return []
        outs = [Out(Presence(session=self.id, leaves=[pid]))]
        cleared = self.state.remove_area(f"{PARTICIPANT_ROOT}.{pid}")
        if cleared:
            outs.append(
                Out(StateOut(session=self.id, v=self.state.version, at=now, sender=SERVER_ID, set=cleared))
            )
        if self.leader == pid:
            outs.extend(self._promote(previous=pid))
        if not self.participants:
            self.empty_since = now
        return outs

    def expire(self, now: float) -> list[Out]:
        """Remove participants whose grace period has run out."""
        outs: list[Out] = []
        grace = self.limits.grace_period
        late = [
            p.id
            for p in self.participants.values()
            if p.dropped_at is not None and now - p.dropped_at >= grace
        ]
        for pid in late:
            outs.extend(self.remove(pid, now))
        return outs

    def _promote(self, previous: str) -> list[Out]:
        """Leader gone: the longest-present connected participant (not an observer) leads."""
        candidates = [p for p in self.participants.values() if p.role == "participant" and p.conn]
        if not candidates:
            self.leader = None
            return [Out(Leader(session=self.id, leader=None, reason="vacant", previous=previous))]
        heir = min(candidates, key=lambda p: p.order)
        heir.role = "leader"
        self.leader = heir.id
        return [
            Out(Leader(session=self.id, leader=heir.id, reason="failover", previous=previous)),
            Out(Presence(session=self.id, updates=[heir.info()])),
        ]

    # --- requests --------------------------------------------------------------------------

    def update_meta(self, pid: str, meta: dict[str, Any]) -> list[Out]:
        p = self.participants[pid]
        p.meta = meta
        return [Out(Presence(session=self.id, updates=[p.info()]))]

    def handover(self, pid: str, to: str) -> list[Out]:
        self._require_leader(pid)
        heir = self.participants.get(to)
        if heir is None or heir.conn is None or heir.role != "participant":
            raise ProtocolError(ErrorCode.INVALID_TARGET, "handover needs a connected participant")
        old = self.participants[pid]
        old.role, heir.role = "participant", "leader"
        self.leader = to
        return [
            Out(Leader(session=self.id, leader=to, reason="handover", previous=pid)),
            Out(Presence(session=self.id, updates=[old.info(), heir.info()])),
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
        return [Out(StateOut(session=self.id, v=self.state.version, at=at, sender=pid, set=won))]

    # --- views -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(v=self.state.version, values=dict(self.state.values))

    def replay_after(self, seq: int) -> list[ControlOut]:
        return [m for m in self.history if m.seq > seq]

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
