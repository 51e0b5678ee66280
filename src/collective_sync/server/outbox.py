"""Per-connection send queue with latest-wins coalescing of state for slow receivers.

Why: a receiver that cannot keep up must not slow down the session or grow memory without
bound. While its socket is congested (`paused`), reliable messages (control, presence,
replies) queue up to a byte bound, and state updates collapse per session into one pending
update holding only the newest value of each key, so the receiver still converges to the
same snapshot. Pure logic: the I/O layer calls `pause`/`resume` from the transport's flow
control and `take` when it may write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.codec import encode, join_frame
from ..protocol.messages import StateOut


@dataclass
class _Merged:
    v: int
    at: float
    sender: str
    values: dict[str, Any] = field(default_factory=dict)


class Outbox:
    __slots__ = ("_coalesced", "_queue", "_queued_bytes", "coalesced_drops", "max_backlog", "paused")

    def __init__(self, max_backlog: int):
        self.max_backlog = max_backlog
        self.paused = False
        self.coalesced_drops = 0  # superseded state values never sent to this receiver
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._coalesced: dict[str, _Merged] = {}

    @property
    def deferred(self) -> bool:
        return bool(self._coalesced)

    def __bool__(self) -> bool:
        return bool(self._queue or self._coalesced)

    def push(self, data: bytes) -> bool:
        """Queue a reliable message; False when the backlog bound is exceeded (close the peer)."""
        self._queue.append(data)
        if self.paused:
            self._queued_bytes += len(data)
            return self._queued_bytes <= self.max_backlog
        return True

    def push_state(self, data: bytes, msg: StateOut) -> bool:
        """Queue a state update, or fold it into the pending one for its session when congested."""
        if not self.paused:
            self._queue.append(data)
            return True
        self.defer_state(msg)
        return True

    def defer_state(self, msg: StateOut) -> None:
        """Fold a state update into the pending one for its session, sent with the next flush
        (also for a receiver that got it over a data channel: this copy repairs a loss)."""
        merged = self._coalesced.get(msg.session)
        if merged is None:
            self._coalesced[msg.session] = _Merged(msg.v, msg.at, msg.sender, dict(msg.set))
            return
        before = len(merged.values)
        merged.values.update(msg.set)
        self.coalesced_drops += len(msg.set) - (len(merged.values) - before)
        merged.v, merged.at, merged.sender = msg.v, max(merged.at, msg.at), msg.sender

    def pending(self) -> tuple[bytes, ...]:
        """The encoded messages a flush would send now (shared frames are cached by this key)."""
        if self._coalesced:
            self._queue.extend(
                encode(StateOut(session=s, v=m.v, at=m.at, sender=m.sender, set=m.values, coalesced=True))
                for s, m in self._coalesced.items()
            )
            self._coalesced.clear()
        return tuple(self._queue)

    def take(self) -> bytes | None:
        """Everything queued as one frame, emptying the box; None when there is nothing."""
        items = self.pending()
        self.clear()
        return join_frame(items) if items else None

    def clear(self) -> None:
        self._queue.clear()
        self._coalesced.clear()
        self._queued_bytes = 0
