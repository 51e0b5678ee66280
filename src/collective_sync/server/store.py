"""The storage seam: what the node persists so sessions survive restarts and crashes.

Shaped like a log plus a few records, the way a stream broker would hold it (compare
Centrifuge's Broker: a publication gets a stream position, history is read by offset within an
epoch), so a NATS JetStream store can implement it as well as the embedded SQLite one:

- every write gets a **ticket**, increasing; `on_durable(t)` (called on the event loop) says every
  write up to ticket `t` is durable. The node holds a control's ack and broadcast until then;
- a control is appended to its session's log at its `seq` (the stream position), and the log
  keeps the last `keep` controls (history for `lastSeq` replay);
- sessions, participants (resume tokens only as hashes) and the state document are records
  overwritten in place; the state document is written throttled, so a crash loses the state
  written since its last snapshot, and the **epoch** changes to say so.

Writes are cheap calls on the event loop; `commit()` at the end of a loop turn hands them to the
store in one batch (group commit: one transaction, one fsync, however many controls).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ..protocol.messages import ControlOut, Role, SessionSettings


def hash_token(token: str) -> str:
    """Resume tokens are 144 random bits: a plain SHA-256 is enough to make a stolen database
    useless for resuming (no slow hash needed, there is nothing to brute-force)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_epoch() -> str:
    return secrets.token_urlsafe(6)


class ParticipantRecord(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    name: str
    role: Role
    meta: dict[str, Any]
    joined_at: float
    order: int
    token_hash: str
    dropped_at: float | None = None  # when its connection dropped (None: connected)
    grace_until: float | None = None  # when it leaves unless it resumes
    user: str | None = None  # the verified user (JWT `sub`) it belongs to; None: anonymous
    facilitator: bool = False


class SessionRecord(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    settings: SessionSettings
    created_at: float
    leader: str | None
    order: int  # join-order counter
    empty_since: float | None
    host: str | None = None  # participant id of the creator
    host_user: str | None = None  # ... and its verified user, who stays host on any rejoin
    locked: bool = False
    barred: list[str] = []  # users the host removed
    revoked: dict[str, float] = {}  # invite id -> its expiry (kept until then)


class RecoveredSession(msgspec.Struct):
    record: SessionRecord
    participants: list[ParticipantRecord]
    controls: list[ControlOut]  # the kept history, in seq order
    seq: int  # the last control's seq (the log's position, even if history was trimmed)
    state: bytes | None  # the last StateDoc snapshot (StateDoc.dump), if any


class Ended(msgspec.Struct, array_like=True):
    id: str
    at: float
    reason: str


class Recovered(msgspec.Struct):
    epoch: str
    clean: bool  # the previous run shut down cleanly (nothing lost)
    stopped_at: float | None  # when it stopped (clean) or last committed (crash); None: first run
    sessions: list[RecoveredSession]
    ended: list[Ended]


class Store(Protocol):
    epoch: str
    immediate: bool  # every write is as durable as it will ever be when made: nothing to hold
    on_durable: Callable[[int], None]
    secret: bytes  # the server's own signing key (invites): the same across restarts
    commits: int  # transactions made durable (for /metrics)
    commit_seconds: float  # time spent making them durable

    def recover(self) -> Recovered: ...
    def put_session(self, record: SessionRecord) -> int: ...
    def end_session(self, ended: Ended) -> int: ...
    def put_participant(self, session: str, record: ParticipantRecord) -> int: ...
    def delete_participant(self, session: str, pid: str) -> int: ...
    def append_control(self, msg: ControlOut, keep: int) -> int: ...
    def put_state(self, session: str, version: int, doc: bytes) -> int: ...
    def commit(self) -> None: ...
    async def close(self, stopped_at: float) -> None: ...


class MemoryStore:
    """`--memory`: nothing survives the process; every write is 'durable' at once."""

    immediate = True
    commits = 0
    commit_seconds = 0.0

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.secret = secrets.token_bytes(32)
        self.on_durable: Callable[[int], None] = lambda ticket: None

    def recover(self) -> Recovered:
        return Recovered(self.epoch, clean=True, stopped_at=None, sessions=[], ended=[])

    def put_session(self, record: SessionRecord) -> int:
        return 0

    def end_session(self, ended: Ended) -> int:
        return 0

    def put_participant(self, session: str, record: ParticipantRecord) -> int:
        return 0

    def delete_participant(self, session: str, pid: str) -> int:
        return 0

    def append_control(self, msg: ControlOut, keep: int) -> int:
        return 0

    def put_state(self, session: str, version: int, doc: bytes) -> int:
        return 0

    def commit(self) -> None:
        pass

    async def close(self, stopped_at: float) -> None:
        pass
