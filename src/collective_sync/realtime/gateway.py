"""The Realtime gateway: one Phoenix socket in, native requests to the node, native messages
translated back out.

The gateway holds no rule of its own. Each Realtime socket is one node `Connection`; what its
client asks becomes native requests (`create`/`join`, `meta`, `control`, `state_set`,
`signal`, `auth`, `leave`) checked by the same code as native clients, and what the node sends
the connection is turned into Phoenix messages. The mapping is in docs/supabase.md:

- topic `realtime:collective-session-<id>` is session `<id>`; joining it joins the session as a
  participant (creating the session when there is none), so the first to join leads;
- presence `track` sets the participant's meta (and makes it present for Realtime clients),
  `untrack` hides it again;
- broadcast `state_update` writes the sender's own participant area, `signal` goes to its `to`
  only, and any other event is a leader control (`polarity_sync` validated as on the native
  protocol), its `timestamp` (ms of network time) becoming the control's `at`.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ..protocol.errors import ErrorCode
from ..server.node import Connection, Node
from . import phoenix
from .presence import BOOKKEEPING, PresenceView, handle

log = logging.getLogger("collective_sync.realtime")
TOPIC = re.compile(r"^realtime:collective-session-([A-Za-z0-9_-]{3,64})$")
PHOENIX = "phoenix"  # the socket's own topic (heartbeats)
ANONYMOUS = "Anonymous"
MAX_PENDING = 1024  # native requests awaiting their reply, per socket
_decode_native = msgspec.json.Decoder().decode
_last_frame: tuple[bytes | None, Any] = (None, None)  # see RealtimeSocket.send_frame
_controls: dict[tuple[str, float, int, str], bytes] = {}  # see RealtimeSocket._control
_encode = msgspec.json.Encoder().encode


class Transport(Protocol):
    """What the gateway needs from the WebSocket."""

    def send_text(self, frame: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class _Channel:
    topic: str
    sid: str
    join_ref: str | None
    echo: bool  # config.broadcast.self: the sender hears its own broadcasts
    ack: bool  # config.broadcast.ack: a broadcast is answered once accepted
    key: str  # config.presence.key ("" for the participant's user id)
    view: PresenceView = field(default_factory=PresenceView)
    pid: str | None = None  # the participant, once joined


@dataclass(slots=True)
class _Pending:
    """A native request in flight for a Phoenix push; `then` runs on its success reply."""

    topic: str
    ref: str | None
    join_ref: str | None
    reply: bool  # answer the push on success (errors are always answered)
    then: Callable[[dict[str, Any]], None] | None = None
    fail: Callable[[dict[str, Any]], bool] | None = None  # True: handled, do not reply


class RealtimeSocket:
    """One Realtime client connection (the node's FrameSink for it)."""

    def __init__(self, node: Node, transport: Transport, vsn: str, apikey: str | None):
        self.node = node
        self.transport = transport
        self.vsn = vsn
        self.apikey = apikey
        self.conn: Connection | None = None
        self._channels: dict[str, _Channel] = {}  # topic -> channel
        self._by_session: dict[str, _Channel] = {}
        self._pending: dict[int, _Pending] = {}
        self._rids = itertools.count(1)
        self._token: str | None = None  # the last token the node accepted

    # --- client -> node ----------------------------------------------------------------------

    def received(self, data: bytes, binary: bool) -> None:
        conn = self.conn
        if conn is None or not self.node.admit(conn):
            return
        try:
            msg = phoenix.decode(data, binary, self.vsn)
        except phoenix.FrameError as exc:
            self._system(PHOENIX, None, "error", f"refused frame: {exc}")
            return
        if msg.topic == PHOENIX:
            if msg.event == "heartbeat":
                self._reply(msg.topic, msg.ref, None, "ok", {})
            else:
                self._reply(msg.topic, msg.ref, None, "error", {"reason": f"unknown event {msg.event!r}"})
            return
        handler = {
            "phx_join": self._join,
            "phx_leave": self._leave,
            "access_token": self._access_token,
            "presence": self._presence,
            "broadcast": self._broadcast,
        }.get(msg.event)
        if handler is None:
            self._refuse(msg, ErrorCode.UNKNOWN_TYPE, f"event {msg.event!r} is not served here")
            return
        if not isinstance(msg.payload, dict):
            self._refuse(msg, ErrorCode.INVALID_MESSAGE, "the payload must be an object")
            return
        handler(msg)

    def _join(self, msg: phoenix.Message) -> None:
        match = TOPIC.fullmatch(msg.topic)
        if match is None:
            why = "only channels named collective-session-<session id> are served here"
            self._refuse(msg, ErrorCode.SESSION_NOT_FOUND, why)
            return
        config = msg.payload.get("config")
        config = config if isinstance(config, dict) else {}
        if config.get("postgres_changes"):
            self._refuse(msg, ErrorCode.INVALID_MESSAGE, "postgres_changes are not served here")
            return
        broadcast = _object(config.get("broadcast"))
        key = _object(config.get("presence")).get("key", "")
        key = key if isinstance(key, str) else ""
        old = self._channels.get(msg.topic)
        if old is not None:  # a rejoin on the same socket: the old channel goes first
            self._drop(old, close=True)
        ch = _Channel(
            msg.topic,
            match.group(1),
            msg.join_ref,
            broadcast.get("self") is True,
            broadcast.get("ack") is True,
            key[:128],
        )
        self._channels[ch.topic] = ch
        self._by_session[ch.sid] = ch
        token = msg.payload.get("access_token") or self.apikey
        self._authenticated(msg, token if isinstance(token, str) else None, lambda: self._enter(ch, msg))

    def _authenticated(self, msg: phoenix.Message, token: str | None, then: Callable[[], None]) -> None:
        """Run `then` once the connection has a verified user (at once on an anonymous server),
        sending the token first when it is new."""
        conn = self.conn
        assert conn is not None
        if self.node.verifier is None or (conn.identity is not None and token in (None, self._token)):
            then()
            return
        if not token:
            self._refuse(msg, ErrorCode.UNAUTHORIZED, "a token is required: pass the access_token")
            self._forget(msg.topic)
            return

        def accepted(_: dict[str, Any]) -> None:
            self._token = token
            then()

        def refused(_: dict[str, Any]) -> bool:
            self._forget(msg.topic)
            return False

        self._request({"type": "auth", "token": token}, msg, reply=False, then=accepted, fail=refused)

    def _enter(self, ch: _Channel, msg: phoenix.Message, retried: bool = False) -> None:
        """Join (or create) the session as a participant that has not tracked yet."""
        if self._channels.get(ch.topic) is not ch:
            return  # left meanwhile
        conn = self.conn
        assert conn is not None
        meta: dict[str, Any] = {BOOKKEEPING: {"tracked": False}}
        req: dict[str, Any]
        session = self.node.sessions.get(ch.sid)
        if session is not None or retried:
            req = {"type": "join", "session": ch.sid, "name": ANONYMOUS, "meta": meta}
            if conn.identity is not None and session is not None and not retried:
                # A Realtime client keeps no resume token: its verified user takes back its
                # dropped Realtime participant (and the lead), also after a restart.
                token = session.reissue(conn.identity.user, lambda p: BOOKKEEPING in p.meta)
                if token is not None:
                    req["resume"] = token
        else:
            req = {"type": "create", "name": ANONYMOUS, "settings": {"sessionId": ch.sid}, "meta": meta}

        def joined(reply: dict[str, Any]) -> None:
            if self._channels.get(ch.topic) is not ch:
                return  # left (or joined again) meanwhile; its leave was sent then
            ch.pid = reply["you"]
            self._reply(ch.topic, msg.ref, msg.join_ref, "ok", {"postgres_changes": []})
            state = ch.view.state(reply.get("participants", []), self._users(ch.sid))
            self._push(ch, "presence_state", state)

        def failed(err: dict[str, Any]) -> bool:
            code = err.get("code")
            if (
                code in (ErrorCode.SESSION_EXISTS, ErrorCode.RESUME_FAILED, ErrorCode.SESSION_NOT_FOUND)
                and not retried
            ):
                if code == ErrorCode.SESSION_NOT_FOUND:
                    self._enter(ch, msg)  # ended meanwhile (empty): open it again
                else:
                    self._enter(ch, msg, retried=True)
                return True
            self._forget(ch.topic)
            return False

        self._request(req, msg, reply=False, then=joined, fail=failed)

    def _leave(self, msg: phoenix.Message) -> None:
        ch = self._channels.get(msg.topic)
        self._reply(msg.topic, msg.ref, msg.join_ref, "ok", {})
        if ch is not None:
            self._drop(ch, close=False)

    def _access_token(self, msg: phoenix.Message) -> None:
        """A refreshed token (same user: the connection's user never changes)."""
        token = msg.payload.get("access_token")
        if self.node.verifier is None or not isinstance(token, str) or token == self._token:
            return

        def accepted(_: dict[str, Any]) -> None:
            self._token = token

        def refused(err: dict[str, Any]) -> bool:
            self._system(
                msg.topic, msg.join_ref, "error", f"token refused ({err.get('code')}): {err.get('message')}"
            )
            return True

        self._request({"type": "auth", "token": token}, msg, reply=False, then=accepted, fail=refused)

    def _presence(self, msg: phoenix.Message) -> None:
        ch = self._joined(msg)
        if ch is None:
            return
        event = msg.payload.get("event")
        if event == "track":
            meta = msg.payload.get("payload", {})
            if not isinstance(meta, dict):
                self._refuse(msg, ErrorCode.INVALID_MESSAGE, "track takes an object")
                return
            identity = self.conn.identity if self.conn is not None else None
            claimed = meta.get("user_id")
            if identity is not None and claimed is not None and claimed != identity.user:
                self._refuse(msg, ErrorCode.FORBIDDEN, "user_id must be your own user id (the token's sub)")
                return
            book: dict[str, Any] = {"tracked": True}
            if ch.key:
                book["key"] = ch.key
            meta = {k: v for k, v in meta.items() if k != BOOKKEEPING} | {BOOKKEEPING: book}
        elif event == "untrack":
            meta = {BOOKKEEPING: {"tracked": False}}
        else:
            self._refuse(msg, ErrorCode.INVALID_MESSAGE, "presence events are track and untrack")
            return
        self._request({"type": "meta", "session": ch.sid, "meta": meta}, msg, reply=True)

    def _broadcast(self, msg: phoenix.Message) -> None:
        ch = self._joined(msg)
        if ch is None:
            return
        event, body = msg.payload.get("event"), msg.payload.get("payload")
        if not isinstance(event, str):
            self._refuse(msg, ErrorCode.INVALID_MESSAGE, "a broadcast needs an event name")
            return
        req: dict[str, Any]
        if event == "state_update":
            if not isinstance(body, dict) or not body:
                self._refuse(msg, ErrorCode.INVALID_MESSAGE, "state_update takes a non-empty object")
                return
            values = {f"participants.{ch.pid}.{k}": v for k, v in body.items()}
            req = {"type": "state_set", "session": ch.sid, "at": self.node.clock(), "set": values}
        elif event == "signal":
            if not isinstance(body, dict) or not isinstance(body.get("to"), str):
                self._refuse(msg, ErrorCode.INVALID_MESSAGE, "signal takes {from, to, signal}")
                return
            own = self._handle(ch.sid, ch.pid or "")
            if body.get("from") not in (None, own):
                self._refuse(msg, ErrorCode.FORBIDDEN, f"signal.from must be your own id ({own})")
                return
            req = {"type": "signal", "session": ch.sid, "to": body["to"], "signal": body.get("signal")}
        else:
            req = {"type": "control", "session": ch.sid, "event": event}
            if isinstance(body, dict) and "timestamp" in body:
                at = _network_time(body["timestamp"])
                if at is None:
                    self._refuse(
                        msg, ErrorCode.INVALID_MESSAGE, "timestamp must be ms (or s) of network time"
                    )
                    return
                req["at"] = at
                body = {k: v for k, v in body.items() if k != "timestamp"}
            if body is not None:
                req["payload"] = body
        self._request(req, msg, reply=ch.ack)

    def _joined(self, msg: phoenix.Message) -> _Channel | None:
        ch = self._channels.get(msg.topic)
        if ch is None or ch.pid is None:
            self._refuse(msg, ErrorCode.NOT_IN_SESSION, "join the channel first (subscribe)")
            return None
        return ch

    def _request(
        self,
        req: dict[str, Any],
        msg: phoenix.Message,
        reply: bool,
        then: Callable[[dict[str, Any]], None] | None = None,
        fail: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        conn = self.conn
        assert conn is not None
        rid = next(self._rids)
        if len(self._pending) >= MAX_PENDING:  # replies that will never come (e.g. a join left at once)
            del self._pending[next(iter(self._pending))]
        self._pending[rid] = _Pending(msg.topic, msg.ref, msg.join_ref, reply, then, fail)
        try:
            data = _encode(req | {"rid": rid})
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a number msgspec cannot write
            del self._pending[rid]
            self._refuse(msg, ErrorCode.INVALID_MESSAGE, str(exc))
            return
        self.node.request(conn, data)

    # --- node -> client (FrameSink) ----------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        global _last_frame
        # The node hands the same frame object to every receiver with the same messages this
        # turn: decode it once for all of them (the decoded messages are only read).
        if _last_frame[0] is frame:
            decoded = _last_frame[1]
        else:
            decoded = _decode_native(frame)
            _last_frame = (frame, decoded)
        for m in decoded if isinstance(decoded, list) else [decoded]:
            rid = m.get("rid")
            pending = self._pending.pop(rid, None) if rid is not None else None
            if pending is not None:
                self._answer(pending, m)
            else:
                self._translate(m)

    def close(self, code: int, reason: str) -> None:
        self.transport.close(code, reason)

    def _answer(self, p: _Pending, m: dict[str, Any]) -> None:
        if m.get("type") == "error":
            if p.fail is not None and p.fail(m):
                return
            response = {"reason": m.get("message", ""), "code": m.get("code")}
            self._reply(p.topic, p.ref, p.join_ref, "error", response)
            return
        if p.then is not None:
            p.then(m)
        if p.reply:
            self._reply(p.topic, p.ref, p.join_ref, "ok", {})

    def _translate(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        sid = m.get("session")
        ch = self._by_session.get(sid) if isinstance(sid, str) else None
        if kind == "error":
            for target in [ch] if ch is not None else list(self._channels.values()):
                self._system(target.topic, target.join_ref, "error", f"{m.get('code')}: {m.get('message')}")
            return
        if ch is None or ch.pid is None:
            return
        if kind == "presence":
            diff = ch.view.diff(
                [*m.get("joins", []), *m.get("updates", [])], m.get("leaves", []), self._users(ch.sid)
            )
            if diff is not None:
                self._push(ch, "presence_diff", diff)
        elif kind == "control":
            if m["from"] == ch.pid and not ch.echo:
                return
            self.transport.send_text(self._control(ch, m))
        elif kind == "state":
            self._state(ch, m)
        elif kind == "signal":
            body = {"from": self._handle(ch.sid, m["from"]), "to": m.get("to"), "signal": m.get("signal")}
            self._push(ch, "broadcast", {"type": "broadcast", "event": "signal", "payload": body})
        elif kind == "left":  # removed, ended or replaced: the channel is over
            self._push(ch, "phx_close", {})
            self._forget(ch.topic)

    def _control(self, ch: _Channel, m: dict[str, Any]) -> bytes:
        """A control as the broadcast frame every Realtime member gets alike (no join_ref, which
        Phoenix clients accept), encoded once per session, seq and serializer."""
        session = self.node.sessions.get(ch.sid)
        # The session's creation time tells a session from a later one with the same id.
        key = (ch.sid, session.created_at if session is not None else -1.0, m["seq"], self.vsn)
        frame = _controls.get(key)
        if frame is None:
            payload = m.get("payload")
            body = dict(payload) if isinstance(payload, dict) else {"value": payload}
            body["timestamp"] = round(m["at"] * 1000.0, 3)
            body["seq"] = m["seq"]
            msg = {"type": "broadcast", "event": m["event"], "payload": body}
            frame = phoenix.encode(phoenix.Message(None, None, ch.topic, "broadcast", msg), self.vsn)
            if session is not None:
                _controls[key] = frame
                if len(_controls) > 1024:
                    del _controls[next(iter(_controls))]
        return frame

    def _state(self, ch: _Channel, m: dict[str, Any]) -> None:
        """Participant-area writes become one `state_update` per writer area, nested, with the
        area owner's `userId`; the leader's document and the server's clean-ups are not sent."""
        if m.get("from") == "server" or (m.get("from") == ch.pid and not ch.echo):
            return
        areas: dict[str, dict[str, Any]] = {}
        for path, value in m.get("set", {}).items():
            root, _, rest = path.partition(".")
            if root != "participants":
                continue
            pid, _, key = rest.partition(".")
            if not key or (pid == ch.pid and not ch.echo):
                continue
            node = areas.setdefault(pid, {})
            *parents, leaf = key.split(".")
            for name in parents:
                child = node.get(name)
                node = node.setdefault(name, {}) if isinstance(child, dict) or child is None else {}
            node[leaf] = value
        for pid, body in areas.items():
            body["userId"] = self._handle(ch.sid, pid)
            self._push(ch, "broadcast", {"type": "broadcast", "event": "state_update", "payload": body})

    # --- helpers ------------------------------------------------------------------------------

    def _users(self, sid: str) -> Callable[[str], str | None]:
        session = self.node.sessions.get(sid)

        def user(pid: str) -> str | None:
            p = session.participants.get(pid) if session is not None else None
            return p.user if p is not None else None

        return user

    def _handle(self, sid: str, pid: str) -> str:
        session = self.node.sessions.get(sid)
        p = session.participants.get(pid) if session is not None else None
        if p is None:
            return pid
        return handle({"id": p.id, "meta": p.meta}, p.user)

    def _drop(self, ch: _Channel, close: bool) -> None:
        """Leave the session (quietly: no reply goes to the client) and forget the channel."""
        if self.conn is not None and ch.sid in self.conn.sessions:  # also while its join is pending
            quiet = phoenix.Message(None, None, ch.topic, "phx_leave", {})
            self._request({"type": "leave", "session": ch.sid}, quiet, reply=False, fail=lambda _: True)
        if close:
            self._push(ch, "phx_close", {})
        self._forget(ch.topic)

    def _forget(self, topic: str) -> None:
        ch = self._channels.pop(topic, None)
        if ch is not None and self._by_session.get(ch.sid) is ch:
            del self._by_session[ch.sid]

    def _refuse(self, msg: phoenix.Message, code: ErrorCode, why: str) -> None:
        self.node.stats.errors[code.value] += 1
        self._reply(msg.topic, msg.ref, msg.join_ref, "error", {"reason": why, "code": code.value})

    def _reply(self, topic: str, ref: str | None, join_ref: str | None, status: str, response: Any) -> None:
        self._send(
            phoenix.Message(join_ref, ref, topic, "phx_reply", {"status": status, "response": response})
        )

    def _push(self, ch: _Channel, event: str, payload: Any) -> None:
        self._send(phoenix.Message(ch.join_ref, None, ch.topic, event, payload))

    def _system(self, topic: str, join_ref: str | None, status: str, message: str) -> None:
        name = topic.removeprefix("realtime:")
        payload = {"status": status, "message": message, "extension": "system", "channel": name}
        self._send(phoenix.Message(join_ref, None, topic, "system", payload))

    def _send(self, msg: phoenix.Message) -> None:
        self.transport.send_text(phoenix.encode(msg, self.vsn))


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _network_time(value: object) -> float | None:
    """A `timestamp` as seconds of network time: the app sends milliseconds (Date.now() plus
    its offset); a value below 10^11 is taken as seconds already."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return value / 1000.0 if value >= 1e11 else float(value)
