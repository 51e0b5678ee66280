"""The seam between the session core and whatever carries broadcasts between processes.

The node publishes each session message once, already encoded; every process with members of
that session receives it and fans it out to its own connections. In one process the
in-memory backplane calls the handler directly; a NATS backplane can implement the same three
methods to span a cluster without the core knowing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..protocol.messages import StateOut


@dataclass(slots=True, frozen=True)
class Broadcast:
    """One encoded session message; `state` is set for coalescible state updates."""

    data: bytes
    to: str | None = None  # one participant id, or None for all members
    exclude: str | None = None  # participant id that must not receive it
    state: StateOut | None = None


BroadcastHandler = Callable[[str, Broadcast], None]


class Backplane(Protocol):
    def subscribe(self, session: str, handler: BroadcastHandler) -> None: ...
    def unsubscribe(self, session: str) -> None: ...
    def publish(self, session: str, item: Broadcast) -> None: ...


class InMemoryBackplane:
    """Single-process backplane: publishing is a direct call to the local subscriber."""

    def __init__(self) -> None:
        self._handlers: dict[str, BroadcastHandler] = {}

    def subscribe(self, session: str, handler: BroadcastHandler) -> None:
        self._handlers[session] = handler

    def unsubscribe(self, session: str) -> None:
        self._handlers.pop(session, None)

    def publish(self, session: str, item: Broadcast) -> None:
        handler = self._handlers.get(session)
        if handler is not None:
            handler(session, item)
