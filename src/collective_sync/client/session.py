"""Client-side view of one joined session: participants, leader, state snapshot, event stream."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from ..engine.state import nest
from ..protocol.messages import (
    Control,
    ControlOut,
    Count,
    CreateInvite,
    Error,
    Handover,
    Invite,
    Joined,
    Leader,
    Leave,
    Media,
    MediaSlot,
    Moderate,
    Moderated,
    ParticipantInfo,
    PolaritySync,
    Presence,
    Roster,
    RosterRequest,
    ServerMessage,
    SessionSettings,
    Signal,
    StateOut,
    StateSet,
    UpdateMeta,
)
from .errors import ConnectionClosed
from .playout import Handler, Playout
from .signal import Changed
from .versions import VersionGuard

if TYPE_CHECKING:
    from .client import Client

E = TypeVar("E")

# What `events()` yields: the server's own message types, plus ConnectionClosed at the end.
Event = Presence | Leader | ControlOut | StateOut | Error | Moderated


class Session:
    """A session this client has joined. Read the attributes; await the methods.

    The attributes always reflect every message received so far (they are updated in the
    frame callback, before any event is yielded), so `wait_for(predicate)` is the simple way
    to wait for a condition; `events()` gives the same messages as a typed stream.
    """

    def __init__(self, client: Client, joined: Joined, max_events: int = 10_000):
        self.client = client
        self.id = joined.session
        self.seq = 0  # last control seq seen
        self.epoch = joined.epoch
        self.left = False
        self.ended: tuple[str, str] | None = None  # (code, reason) once the session is gone
        self.invite_token: str | None = None  # what opened it, if private: to rejoin as someone new
        self.events_dropped = 0
        self._events: deque[Event] = deque(maxlen=max_events)
        # Changes applied at network time (state at `at` + D, control at `at`): the engine's view.
        self.playout = Playout(client, joined.settings.playout_delay)
        self.changed = Changed()  # notified after every message for this session
        self.adopt(joined)

    def adopt(self, joined: Joined) -> None:
        """(Re)initialise from `joined`: on join, and again on every rejoin after a reconnect
        (the same participant, or a new one if the grace period was over). The snapshot is the
        present; after an epoch change (the server lost state in a crash) the old `seq` and
        `version` mean nothing any more."""
        self.me = joined.you
        self.token = joined.token  # pass as `resume=` to rejoin as the same participant
        self.settings: SessionSettings = joined.settings
        self.leader: str | None = joined.leader
        # A large session lists only its roster here; the rest is counted (see `headcount`).
        self.participants: dict[str, ParticipantInfo] = {p.id: p for p in joined.participants}
        self.count: Count | None = joined.count
        self.values: dict[str, Any] = dict(joined.state.values)  # flat path -> value snapshot
        self.version = joined.state.v
        # State can arrive twice or out of order when a data channel carries it too.
        self._versions = VersionGuard(joined.state.v)
        self.media: dict[str, MediaSlot] = {m.slot: m for m in joined.media}  # live streams
        same_epoch = joined.epoch == self.epoch
        self.seq = max(self.seq, joined.seq) if same_epoch else joined.seq
        self.epoch = joined.epoch
        self.host: str | None = joined.host  # the participant who moderates
        self.locked = joined.locked
        me = self.participants.get(self.me)
        self.name = me.name if me is not None else ""
        self.playout.reseed(self.values)
        self.changed.notify()

    def end(self, code: str, reason: str) -> None:
        """The session is gone (a rejoin was refused with `session_ended`): no more retries."""
        self.ended = (code, reason)
        self.playout.close()
        self.changed.notify()

    # --- reading ---------------------------------------------------------------------------

    @property
    def role(self) -> str:
        p = self.participants.get(self.me)
        return p.role if p else "participant"

    @property
    def headcount(self) -> int:
        """Everyone in the session: the latest head count while some are only counted (a large
        session), else the participants listed."""
        c = self.count
        return c.total if c is not None and c.total > c.listed else len(self.participants)

    async def roster(self, after: int | None = None, limit: int = 100) -> Roster:
        """A page of everyone, in join order (`Roster.next` is the next page's `after`): a view
        of this moment, for a large session whose `participants` lists only its roster."""
        reply: Roster = await self.client.request(RosterRequest(session=self.id, after=after, limit=limit))
        return reply

    @property
    def is_leader(self) -> bool:
        return self.leader == self.me

    @property
    def state(self) -> dict[str, Any]:
        """The current snapshot as a nested plain dict."""
        return nest(self.values)

    async def wait_for(self, predicate: Callable[[Session], bool], timeout: float = 10.0) -> None:
        """Return once `predicate(self)` holds; re-checked after every message for this session."""
        await self.changed.until(lambda: predicate(self), self.client.raise_if_closed, timeout)

    async def events(self) -> AsyncIterator[Event]:
        """Presence, leader, control, state and error messages in arrival order (one consumer)."""
        while True:
            while self._events:
                yield self._events.popleft()
            self.client.raise_if_closed()
            await self.changed.wait()

    async def next_event(self, kind: type[E] | tuple[type[E], ...], timeout: float = 10.0) -> E:
        """The next event of `kind`; events of other kinds before it are consumed and skipped."""
        async with asyncio.timeout(timeout):
            async for ev in self.events():
                if isinstance(ev, kind):
                    return ev
        raise AssertionError("unreachable")  # pragma: no cover

    # --- acting ----------------------------------------------------------------------------

    async def set(self, values: Mapping[str, Any], at: float | None = None, *, ack: bool = False) -> None:
        """Set state paths (None deletes), stamped with network time `at` (default: now).

        Without `ack` this is fire-and-forget, as fits 60 Hz updates: rejections still
        arrive as `Error` events. The local snapshot changes when the server's update arrives.
        """
        stamp = self.client.server_time() if at is None else at
        msg = StateSet(session=self.id, at=stamp, set=dict(values))
        if ack:
            await self.client.request(msg)
        else:
            self.client.send(msg)

    async def control(self, event: str, payload: Any = None, at: float | None = None) -> int:
        """Send a leader control message; returns its session sequence number."""
        ack = await self.client.request(Control(session=self.id, event=event, payload=payload, at=at))
        return ack.seq

    async def polarity_sync(self, payload: PolaritySync | Mapping[str, Any], at: float | None = None) -> int:
        body = msgspec.to_builtins(payload) if isinstance(payload, PolaritySync) else dict(payload)
        return await self.control("polarity_sync", body, at)

    async def moderate(
        self, action: Literal["remove", "lock", "unlock", "end", "revoke"], target: str | None = None
    ) -> None:
        """The host's tools (`forbidden` for anyone else): `remove` a participant (its user may
        not come back), `lock`/`unlock` the session against new joins, `end` it for everyone,
        `revoke` an invite (target: its id)."""
        await self.client.request(Moderate(session=self.id, action=action, target=target))

    async def invite(
        self, role: Literal["participant", "witness"] = "participant", ttl: float = 86400.0
    ) -> Invite:
        """(Host only) an invite to this session granting `role` for `ttl` seconds: hand out
        `.invite`; `moderate("revoke", .id)` withdraws it."""
        reply: Invite = await self.client.request(CreateInvite(session=self.id, role=role, ttl=ttl))
        return reply

    async def update_meta(self, meta: Mapping[str, Any]) -> None:
        await self.client.request(UpdateMeta(session=self.id, meta=dict(meta)))

    async def signal(self, to: str, data: Any) -> None:
        """Send `data` to one participant only (or every participant of a user id): peer-to-peer
        signalling; it arrives there as a `SignalOut` event, and is never stored."""
        await self.client.request(Signal(session=self.id, to=to, signal=data))

    async def handover(self, to: str) -> None:
        await self.client.request(Handover(session=self.id, to=to))

    async def leave(self) -> None:
        """Leave for good. While disconnected only this client forgets the session (it is not
        rejoined); the server lets the participant go when its grace period ends."""
        try:
            if self.client.ready:
                await self.client.request(Leave(session=self.id))
        except ConnectionClosed:
            pass
        finally:
            self.left = True
            self.playout.close()
            self.client.forget(self.id)

    # --- fed by the client -----------------------------------------------------------------

    @property
    def applied(self) -> dict[str, Any]:
        """The state as the engine should be playing it now (flat paths), after the jitter buffer."""
        return self.playout.values

    def on_apply(self, handler: Handler) -> None:
        """Call `handler(Applied)` at each change's playout instant (from the event loop)."""
        self.playout.handlers.append(handler)

    def apply(self, msg: ServerMessage, arrival: float | None = None) -> None:
        """Fold one server message into the view, queue it as an event, wake waiters; state and
        control also go to the playout (`arrival` is the local clock reading at receipt)."""
        if type(msg) is StateOut:
            fresh = self._versions.admit(msg.set, msg.v)
            if fresh is None:
                return  # a copy of what was applied already (data channel and WebSocket)
            if fresh is not msg.set:
                msg = msgspec.structs.replace(msg, set=dict(fresh))
            self.playout.on_state(msg, self.client.network_time(arrival))
            values = self.values
            for path, value in msg.set.items():
                if value is None:
                    values.pop(path, None)
                else:
                    values[path] = value
            self.version = max(self.version, msg.v)
        elif type(msg) is Media:
            self.media = {m.slot: m for m in msg.slots}
        elif type(msg) is Presence:
            for p in msg.joins:
                self.participants[p.id] = p
            for p in msg.updates:
                self.participants[p.id] = p
            for pid in msg.leaves:
                self.participants.pop(pid, None)
            if msg.count is not None:
                self.count = msg.count
        elif type(msg) is Leader:
            self.leader = msg.leader
        elif type(msg) is Moderated and msg.action in ("lock", "unlock"):
            self.locked = msg.action == "lock"
        elif type(msg) is ControlOut:
            self.seq = max(self.seq, msg.seq)
            self.playout.on_control(msg)
        if len(self._events) == self._events.maxlen:
            self.events_dropped += 1
        self._events.append(msg)  # type: ignore[arg-type]
        self.changed.notify()


__all__ = ["ConnectionClosed", "Event", "Session"]
