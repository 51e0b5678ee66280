"""What happens on a connection before picows takes it and after it lets go of it.

picows (the WebSocket layer) answers only GET and closes a socket the moment it decides to: a
peer that is still sending then gets a TCP reset, and a reset makes its kernel discard the close
frame we sent before the peer could read it (the client sees 1006 instead of our 1008/1009/4002).
Both are TCP-level matters no WebSocket library here handles, so this module does them:

- `RequestGate` reads the first bytes of a connection. GET goes to picows unchanged (upgrade or
  plain HTTP); HEAD is answered here with GET's headers and no body; any other method (with a
  small body at most) goes to the `other` handler, which serves POST and OPTIONS on the
  Supabase-compatible function path and answers 405 with the path's `Allow` elsewhere.
- `LingeringTransport` is the transport picows writes to. Its `close()` (picows calls it after
  queueing a close frame) does not drop the socket: it half-closes it once the close frame is
  written (FIN), discards whatever the peer still sends, and drops the socket when the peer
  closes its side or after `linger` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

MAX_HEAD_BYTES = 16 * 1024  # request line + headers of a HEAD or refused request (as picows' limit)
MAX_BODY_BYTES = 64 * 1024  # body of a POST answered here


class LingeringTransport:
    """Wraps an asyncio transport; everything passes through except `close`."""

    def __init__(self, transport: asyncio.Transport, linger: float):
        self._transport = transport
        self._linger = linger
        self._lingering = False
        # Told when the close starts (whoever started it), so the connection stops counting
        # then, not when the peer finally goes.
        self.on_close: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:  # on every send of a fan-out: not through __getattr__
        return self._transport.is_closing()

    def close(self) -> None:
        t = self._transport
        if self._lingering or t.is_closing():
            return
        self._lingering = True
        if self.on_close is not None:
            self.on_close()
        drain = _Drain(t.get_protocol())
        t.set_protocol(drain)
        drain.timer = asyncio.get_running_loop().call_later(self._linger, t.abort)
        try:
            t.write_eof()  # FIN after everything queued (the close frame) is written
        except (OSError, RuntimeError):
            t.abort()


class _Drain(asyncio.Protocol):
    """Reads and discards what a closed connection's peer still sends, until it closes too."""

    def __init__(self, inner: asyncio.BaseProtocol):
        self.inner = inner
        self.timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the peer has closed its side: close ours (after our pending writes)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)


HeadHandler = Callable[[str], tuple[int, dict[str, str], int]]
# (method, target, headers with lower-case names, body) -> (status, headers, body)
OtherHandler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


class RequestGate(asyncio.Protocol):
    """First protocol of every connection: routes it by HTTP method, then steps aside."""

    def __init__(
        self,
        websocket: Callable[[], asyncio.BaseProtocol],
        head: HeadHandler,
        headers: dict[str, str],
        linger: float,
        timeout: float,
        other: OtherHandler | None = None,
        admit: Callable[[Callable[[], None]], None] | None = None,
        queued_paths: frozenset[bytes] = frozenset(),
    ):
        self._websocket = websocket
        self._head = head
        self._other = other
        self._headers = headers  # on every response answered here
        self._linger = linger
        self._timeout = timeout  # for the request head (picows restarts it for a GET)
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Upgrades take their turn (server/admission.py); what arrives meanwhile is buffered.
        self._admit = admit
        self._queued_paths = queued_paths  # GETs of these (WebSocket upgrades) take turns
        self._waiting = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = t = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(self._timeout, t.abort)

    def data_received(self, data: bytes) -> None:
        t = self._transport
        assert t is not None
        self._buffer += data
        if self._waiting:
            return
        space = self._buffer.find(b" ")
        if space < 0:
            if len(self._buffer) > 16:
                self._reply(HTTPStatus.BAD_REQUEST, {})
            return
        if self._buffer[:space] == b"GET":
            if self._admit is None:
                self._hand_over(t)
                return
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, {})
                return  # the request line is still coming
            target = bytes(self._buffer[space + 1 : line_end]).split(b" ", 1)[0]
            if target.split(b"?", 1)[0] not in self._queued_paths:
                self._hand_over(t)  # plain HTTP (a health check, the page) never waits for joiners
            else:  # its turn may take longer than the head's timeout; picows times the rest
                self._waiting = True
                if self._timer is not None:
                    self._timer.cancel()
                self._admit(lambda: None if self._lost else self._hand_over(t))
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, {})
            return
        request_line = bytes(self._buffer[: self._buffer.find(b"\r\n")]).split(b" ")
        if request_line[0] != b"HEAD" and len(request_line) == 3 and self._other is not None:
            self._answer_other(request_line[0].decode("latin-1"), request_line[1].decode("latin-1"), end)
            return
        if request_line[0] != b"HEAD" or len(request_line) != 3:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, HEAD"})
            return
        status, headers, length = self._head(request_line[1].decode("latin-1"))
        self._reply(HTTPStatus(status), headers, length)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()

    def _answer_other(self, method: str, target: str, end: int) -> None:
        """POST/OPTIONS: wait for the whole (small) body, then answer with the handler's response."""
        assert self._other is not None
        headers: dict[str, str] = {}
        for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._reply(HTTPStatus.LENGTH_REQUIRED, {})
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST, {})
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        if len(body) < length:
            return  # the rest of the body is still coming
        status, extra, content = self._other(method, target, headers, body)
        self._reply(HTTPStatus(status), extra, len(content), content)

    def _hand_over(self, t: asyncio.Transport) -> None:
        """Give the connection, and the bytes read so far, to picows."""
        if self._timer is not None:
            self._timer.cancel()
        ws: Any = self._websocket()
        t.set_protocol(ws)
        ws.connection_made(LingeringTransport(t, self._linger))
        data = memoryview(bytes(self._buffer))
        while data:  # picows is a buffered protocol: it lends us its buffer to fill
            buf = ws.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            ws.buffer_updated(n)
            data = data[n:]

    def _reply(self, status: HTTPStatus, headers: dict[str, str], length: int = 0, body: bytes = b"") -> None:
        """A response (body-less unless given), then close (lingering, as the peer may still be sending)."""
        t = self._transport
        assert t is not None
        if self._timer is not None:
            self._timer.cancel()
        lines = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Length: {length}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (self._headers | headers).items()]
        t.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        LingeringTransport(t, self._linger).close()
