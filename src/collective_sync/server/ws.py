"""WebSocket and HTTP transport on picows: moves bytes between sockets and the node, nothing else.

picows was chosen by measurement (docs/architecture.md): its C frame codec and callback API
avoid a task and a queue per connection, which is what dominates fan-out cost in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import ssl
import struct
import termios
from collections.abc import Awaitable
from http import HTTPStatus
from urllib.parse import parse_qs

import msgspec
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

from ..protocol.errors import CloseCode
from ..realtime import phoenix
from ..realtime.gateway import RealtimeSocket
from .gcpolicy import GcPolicy
from .hostlimits import LISTEN_BACKLOG
from .http import BASE_HEADERS, HttpApi, response_headers
from .node import Connection, FrameSink, Node
from .sendpool import SendPool
from .tcp import LingeringTransport, RequestGate

READ_BUFFER = 2048  # picows' smallest

# Not in picows' stubs: the protocol class ws_create_server instantiates (pinned picows 2.3).
_picows_protocol = picows.picows.WSProtocol  # type: ignore[attr-defined]
WS_PATH = "/ws"
REALTIME_PATH = "/realtime/v1/websocket"  # where supabase-js connects (`<url>/realtime/v1` + /websocket)
RESTART_REASON = "server restarting; reconnect and resume"
QUEUED_PATHS = frozenset({WS_PATH.encode(), REALTIME_PATH.encode()})  # upgrades take turns (admission)
log = logging.getLogger("collective_sync.ws")
# The kernel's count of unsent or unacknowledged bytes on a socket (Linux; elsewhere the
# keepalive counts pongs only).
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)


class _Peer(WSListener):
    """One WebSocket connection: frames to `node.receive`, flow control to `node.pause/resume`."""

    __slots__ = ("_binary", "_fd", "_fragments", "_fragments_size", "_written", "conn", "node", "transport")

    def __init__(self, node: Node):
        self.node = node
        self.transport: WSTransport | None = None
        self.conn: Connection | None = None
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._binary = False  # the message being reassembled came in binary frames
        self._written = 0  # payload bytes handed to the transport (see `send_user_specific_ping`)
        self._fd = -1  # the socket, for SendPool's direct writes (-1: never, e.g. TLS)

    def received(self, conn: Connection, data: bytes, binary: bool) -> None:
        """One complete message (the native protocol treats text and binary alike)."""
        self.node.receive(conn, data)

    def sink(self) -> FrameSink:
        return self

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if isinstance(transport.underlying_transport, LingeringTransport):
            transport.underlying_transport.on_close = self._closing
        config = self.node.config
        transport.underlying_transport.set_write_buffer_limits(high=config.write_high_water)
        if config.socket_send_buffer is not None:
            sock = transport.underlying_transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_send_buffer)
        peer = transport.underlying_transport.get_extra_info("peername")
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None and transport.underlying_transport.get_extra_info("sslcontext") is None:
            self._fd = sock.fileno()
        self.conn = self.node.connect(self.sink(), peer[0] if peer else None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        conn = self.conn
        assert conn is not None
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self._fragments is not None:
                self.node.protocol_error(conn, "a new message inside a fragmented one")
            elif frame.fin:
                self.received(conn, frame.get_payload_as_bytes(), kind is WSMsgType.BINARY)
            else:
                self._binary = kind is WSMsgType.BINARY
                self._fragments = [frame.get_payload_as_bytes()]
                self._fragments_size = frame.payload_size
                self._check_fragments(conn)
        elif kind is WSMsgType.CONTINUATION:
            self._continue(conn, frame)
        elif kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            transport.send_close(code if code != picows.WSCloseCode.NO_INFO else picows.WSCloseCode.OK)
            transport.disconnect()

    def _continue(self, conn: Connection, frame: WSFrame) -> None:
        """Reassemble a fragmented message; past the size limit, refuse it and skip the rest."""
        if self._fragments is None:
            if self._fragments_size < 0:  # the rest of a message already refused as too large
                self._fragments_size = 0 if frame.fin else -1
                return
            self.node.protocol_error(conn, "a continuation frame without a message to continue")
            return
        self._fragments_size += frame.payload_size
        self._fragments.append(frame.get_payload_as_bytes())
        if self._check_fragments(conn):
            return
        if frame.fin:
            data, self._fragments = b"".join(self._fragments), None
            self._fragments_size = 0
            self.received(conn, data, self._binary)

    def _check_fragments(self, conn: Connection) -> bool:
        """True (and the message refused) once the fragments so far pass the size limit."""
        if self._fragments_size <= self.node.config.max_message_bytes:
            return False
        self.node.too_large(conn, self._fragments_size)
        self._fragments, self._fragments_size = None, -1
        return True

    def _closing(self) -> None:
        """The close handshake started (either side, or picows itself, e.g. 1009): the node lets
        go of the connection now rather than when the peer finally closes."""
        if self.conn is not None:
            self.node.disconnect(self.conn)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing()  # a no-op when the close already started here

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.node.pause(self.conn)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.node.resume(self.conn)

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        """picows' keepalive pings a client that has sent nothing for `ping_idle` and closes it
        if no pong comes within `ping_reply`. A listener that never sends but is busy reading a
        backlog (a join flood, a burst of state) reads the ping only after the backlog, so its
        pong is late although it is alive. So the peer counts as alive too when it acknowledged
        bytes of ours (TCP) while the ping waited: checked shortly before the reply deadline."""
        transport.send_ping()
        acked = self._acked()
        if acked is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.9 * self.node.config.ping_reply, self._progress_is_pong, transport, acked)

    def _progress_is_pong(self, transport: WSTransport, acked_at_ping: int) -> None:
        now = self._acked()
        if now is not None and now > acked_at_ping and not transport.is_disconnected:
            transport.notify_user_specific_pong_received()

    def _acked(self) -> int | None:
        """Bytes the peer has acknowledged, up to a constant: payload bytes written minus what is
        still queued in the transport and in the kernel (unsent or unacknowledged). Frame headers
        are not counted as written, so this can only err towards "no progress"."""
        t = self.transport
        if t is None or t.is_disconnected:
            return None
        under = t.underlying_transport
        sock = under.get_extra_info("socket")
        if sock is None:
            return None
        if _OUTQ is None:
            return None
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return None
        return self._written - under.get_write_buffer_size() - queued

    # FrameSink
    def send_frame(self, frame: bytes) -> None:
        t = self.transport
        # The socket can be gone (peer crashed, RST) a moment before picows reports the
        # disconnect; writing then only logs a warning per frame.
        if t is not None and not t.is_disconnected and not t.underlying_transport.is_closing():
            t.send(WSMsgType.TEXT, frame)
            self._written += len(frame)

    send_text = send_frame  # realtime.gateway.Transport

    def raw_fd(self) -> int:
        """The socket, if SendPool may write this connection's next frame to it directly: not
        while the transport has bytes queued (they go first) or the connection is closing."""
        t = self.transport
        if t is None or t.is_disconnected or self._fd < 0:
            return -1
        under = t.underlying_transport
        if under.is_closing() or under.get_write_buffer_size():
            return -1
        return self._fd

    def sent_raw(self, frame: bytes, rest: bytes) -> None:
        """SendPool wrote `frame` (all but `rest`, which the transport sends after it)."""
        self._written += len(frame)
        if rest and self.transport is not None:
            self.transport.underlying_transport.write(rest)

    def close(self, code: int, reason: str) -> None:
        """Close frame, then a lingering close (tcp.py), so the peer gets to read the code."""
        if self.transport is not None:
            self.transport.send_close(code, reason.encode())  # type: ignore[arg-type]
            self.transport.disconnect()


class _RealtimePeer(_Peer):
    """A Supabase Realtime client: its frames go through the gateway, which is the node's sink."""

    __slots__ = ("gateway",)

    def __init__(self, node: Node, vsn: str, apikey: str | None):
        super().__init__(node)
        self.gateway = RealtimeSocket(node, self, vsn, apikey)

    def sink(self) -> FrameSink:
        return self.gateway

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        self.gateway.conn = self.conn

    def received(self, conn: Connection, data: bytes, binary: bool) -> None:
        self.gateway.received(data, binary)


def _refuse_a_taken_port(host: str, port: int) -> None:
    """SO_REUSEPORT would let a second server join a port an older one still listens on (the
    kernel would then share the connections between them). A plain bind first fails as a
    server without it would: address in use."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, addr in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(addr)


class WsServer:
    """Owns the listening socket, the per-turn flush and the periodic tick of one node."""

    def __init__(self, node: Node, http: HttpApi):
        self.node = node
        self.http = http
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._ticker: asyncio.TimerHandle | None = None
        # The process's GC policy, when the server owns the process (app.serve; not in tests,
        # which host many servers in one process).
        self.gc: GcPolicy | None = None
        node.schedule_flush = self._schedule_flush

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port (port 0 picks a free one)."""
        self._loop = loop = asyncio.get_running_loop()
        self.node.admission.defer = loop.call_soon
        config = self.node.config
        if config.send_threads > 1 and config.tls_cert is None:
            self.node.send_pool = SendPool(config.send_threads, config.send_batch_min)
        limit = config.max_message_bytes
        logger = logging.getLogger("picows.server")

        def websocket() -> asyncio.BaseProtocol:
            # The arguments of picows.ws_create_server, which builds the same protocol; we build
            # it ourselves to put the request gate and the lingering close around it (tcp.py).
            return _picows_protocol(
                None,
                None,
                False,
                self._route,
                logger,
                True,  # disconnect_on_exception: a bug in a handler closes that connection (1011)
                config.handshake_timeout,
                True,  # enable_auto_ping
                config.ping_idle,
                config.ping_reply,
                picows.WSAutoPingStrategy.PING_WHEN_IDLE,
                True,  # enable_auto_pong
                max(16 * limit, 1 << 20),  # max_frame_size: beyond it, close 1009 unread
                None,
                # read_buffer_init_size: clients send little (joins, pongs); it grows for a big
                # message. picows' 16 KiB default cost ~14 KB of RSS per connection at 10,000.
                READ_BUFFER,
            )

        tls = None
        if config.tls_cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(config.tls_cert, config.tls_key)

        def gate() -> RequestGate:
            return RequestGate(
                websocket,
                self._head,
                BASE_HEADERS,
                config.close_linger,
                config.handshake_timeout,
                self.http.other,
                self.node.admission.submit,
                QUEUED_PATHS,
            )

        def listen(at: str, on: int) -> Awaitable[asyncio.Server]:
            return loop.create_server(
                gate,
                at,
                on,
                # A join storm (thousands connecting in a second) overflows asyncio's default
                # of 100: the kernel then drops SYNs, and each dropped client waits a 1 s retransmit.
                backlog=LISTEN_BACKLOG,
                ssl=tls,
                ssl_handshake_timeout=config.handshake_timeout if tls is not None else None,
                reuse_port=config.acceptors > 1,
            )

        if port and config.acceptors > 1:
            _refuse_a_taken_port(host, port)
        first = await listen(host, port)
        self._servers = [first]
        # uvloop accepts one connection per listening socket per event-loop turn. Once a
        # fan-out to thousands makes a turn last 80 ms, that is about 12 joins a second, and a
        # join storm waits in the kernel's accept queue (measured: docs/benchmarks.md). So the
        # port gets `acceptors` sockets (SO_REUSEPORT; the kernel spreads new connections over
        # them), each accepting one per turn.
        for sock in first.sockets:
            at, on = sock.getsockname()[:2]
            for _ in range(config.acceptors - 1):
                self._servers.append(await listen(at, on))
        self._tick()
        return int(first.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Graceful stop, bounded by `shutdown_timeout`: stop accepting; persist everyone as
        dropped and every session's state; wait for the store (so held controls are acked);
        close every connection with 1001; give the peers `close_linger` to close."""
        node = self.node
        for server in self._servers:
            server.close()  # no new connections from here on
        if self._ticker is not None:
            self._ticker.cancel()
        node.shutdown()
        deadline = node.config.shutdown_timeout
        try:
            async with asyncio.timeout(deadline):
                await node.store.close(node.clock())
        except TimeoutError:
            log.error("the store did not finish writing within %.1f s", deadline)
        node.close_all(CloseCode.GOING_AWAY, RESTART_REASON)
        if node.media is not None:
            await node.media.stop()
        if node.send_pool is not None:
            node.send_pool.close()
            node.send_pool = None
        if self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(node.config.close_linger + 0.5):
                    await asyncio.gather(*(server.wait_closed() for server in self._servers))

    def _route(self, request: WSUpgradeRequest) -> _Peer | picows.WSUpgradeResponseWithListener:
        target = request.path.decode("latin-1")
        path, _, query = target.partition("?")
        if path in (WS_PATH, REALTIME_PATH):
            if request.headers.get("upgrade", "").lower() == "websocket":
                origin = request.headers.get("origin")
                if not self._origin_allowed(origin, request.headers.get("host")):
                    refusal = picows.WSUpgradeResponse.create_error_response(
                        HTTPStatus.FORBIDDEN,
                        b'{"error":"forbidden_origin","message":"this origin may not open a WebSocket here"}',
                        {"Content-Type": "application/json", **BASE_HEADERS},
                    )
                    return picows.WSUpgradeResponseWithListener(refusal, None)
                peer = self._peer(path, query)
                if isinstance(peer, picows.WSUpgradeResponse):
                    return picows.WSUpgradeResponseWithListener(peer, None)
                upgrade = picows.WSUpgradeResponse.create_101_response(BASE_HEADERS)
                return picows.WSUpgradeResponseWithListener(upgrade, peer)
            refusal = picows.WSUpgradeResponse.create_error_response(
                HTTPStatus.UPGRADE_REQUIRED, b"a WebSocket endpoint", {"Upgrade": "websocket", **BASE_HEADERS}
            )
            return picows.WSUpgradeResponseWithListener(refusal, None)
        resp = self.http.handle(path, query, request.headers.get("authorization"))
        headers = response_headers(resp)
        if resp.status == HTTPStatus.OK:
            response = picows.WSUpgradeResponse.create_ok_response(resp.body, headers)
        else:
            response = picows.WSUpgradeResponse.create_error_response(resp.status, resp.body, headers)
        return picows.WSUpgradeResponseWithListener(response, None)

    def _peer(self, path: str, query: str) -> _Peer | picows.WSUpgradeResponse:
        """The listener for an upgrade: native, or Realtime (`vsn` 1.0.0 or 2.0.0, `apikey`)."""
        if path == WS_PATH:
            return _Peer(self.node)
        params = parse_qs(query)
        vsn = params.get("vsn", [phoenix.VSN_1])[0]
        if vsn not in phoenix.VERSIONS:
            body = msgspec.json.encode(
                {"error": "invalid_message", "message": f"vsn must be one of {', '.join(phoenix.VERSIONS)}"}
            )
            headers = {"Content-Type": "application/json", **BASE_HEADERS}
            return picows.WSUpgradeResponse.create_error_response(HTTPStatus.BAD_REQUEST, body, headers)
        apikey = params.get("apikey", [None])[0]
        return _RealtimePeer(self.node, vsn, apikey)

    def _origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Cross-site WebSocket hijacking: a browser page on another site must not open a socket
        here on its visitor's behalf. Allowed: no Origin (not a browser), this server's own
        origin, or one listed in `allowed_origins` ("*": any)."""
        if origin is None:
            return True
        allowed = self.node.config.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return host is not None and origin in (f"http://{host}", f"https://{host}")

    def _head(self, target: str) -> tuple[int, dict[str, str], int]:
        """HEAD: GET's status and headers, without the body."""
        path, _, query = target.partition("?")
        if path == WS_PATH:
            return 426, {"Upgrade": "websocket"}, 0
        resp = self.http.handle(path, query)
        return resp.status, response_headers(resp), len(resp.body)

    def _schedule_flush(self) -> None:
        assert self._loop is not None
        self._loop.call_soon(self.node.flush)

    def _tick(self) -> None:
        assert self._loop is not None
        self.node.tick()
        if self.gc is not None:
            self.gc.tick(self.node.stats.closed, len(self.node.conns))
        self._ticker = self._loop.call_later(self.node.config.tick_interval, self._tick)
