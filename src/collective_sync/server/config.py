"""Server settings, with the defaults documented in docs/protocol.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..auth.verifier import AuthConfig
from .session import SessionLimits


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    max_message_bytes: int = 64 * 1024
    rate_per_second: float = 200.0  # messages per connection per second (token bucket)
    burst: int = 400
    max_sessions_per_connection: int = 8
    max_sessions: int = 10_000
    max_meta_bytes: int = 1024
    session_ttl: float = 60.0  # a session ends this long after its last participant is gone
    max_backlog_bytes: int = 4 * 1024 * 1024  # reliable bytes queued for a congested receiver
    write_high_water: int = 256 * 1024  # transport buffer above which a receiver counts as slow
    socket_send_buffer: int | None = None  # SO_SNDBUF for client sockets; None keeps the kernel's
    ping_idle: float = 15.0  # seconds without traffic from a client before the server pings it
    ping_reply: float = 10.0  # seconds a ping may wait for its pong (or for the peer to read on)
    # Seconds of joins and upgrades per event-loop turn: a join storm queues instead of
    # delaying members' updates (see admission.py).
    admission_budget: float = 0.004
    # Flushes to at least `send_batch_min` receivers are written by this many threads (the
    # kernel's send is most of a large fan-out's cost; see sendpool.py). 1: the loop alone,
    # the default: on the 2-core benchmark machine, with the receivers on it, 2 gained nothing
    # (docs/benchmarks.md); it is for servers with cores to spare.
    send_threads: int = 1
    send_batch_min: int = 512
    # A flush that took longer than this means the server is behind: a large session's state is
    # then merged per turn (Node._merge_state), which keeps its latency bounded.
    merge_after: float = 0.05
    gc_young: int = 50_000  # young-generation threshold of the GC policy (gcpolicy.py); 0: Python's own
    tick_interval: float = 0.05  # how often grace periods and session expiry are checked
    # Listening sockets on the one port (SO_REUSEPORT): uvloop accepts one connection per
    # socket per event-loop turn, and a turn holding a fan-out to thousands is long (ws.py).
    acceptors: int = 32
    handshake_timeout: float = 5.0  # seconds from TCP connect to a complete upgrade request
    close_linger: float = 2.0  # after our close frame: seconds the peer has to read it and close
    session: SessionLimits = field(default_factory=SessionLimits)
    data_dir: Path | None = None  # where the durable store lives; None: in memory only (`--memory`)
    sync: Literal["full", "normal"] = "full"  # fsync every commit, or only survive a process crash
    snapshot_interval: float = 0.1  # at most one state snapshot per session this often
    max_ended_remembered: int = 100_000  # ended session ids answered with `session_ended`
    ended_retention: float = 24 * 3600.0  # ... for this long
    shutdown_timeout: float = 5.0  # SIGTERM to exit, at most
    auth: AuthConfig = field(default_factory=AuthConfig)  # nothing configured: anonymous
    allow_anonymous: bool = False  # anonymous use when listening beyond loopback (else refuse to start)
    auth_timeout: float = 10.0  # seconds a connection may stay without a valid token (auth required)
    # Browser origins allowed to open a WebSocket besides the server's own (CSWSH); "*": any.
    allowed_origins: tuple[str, ...] = ()
    metrics_token: str | None = None  # bearer token for /metrics (required beyond loopback)
    # Per address generous (a venue's Wi-Fi is one public address for everyone in the room);
    # per verified user a few devices; a user's messages share one bucket across its connections.
    max_connections_per_ip: int = 2048
    max_connections_per_user: int = 16
    user_rate_per_second: float = 400.0
    user_burst: int = 800
    tls_cert: str | None = None  # PEM certificate chain: serve wss:// and https:// directly
    tls_key: str | None = None  # its PEM private key
    rtc: bool = True  # the SFU (WebRTC media and data channels); off: the WebSocket carries everything
    rtc_hosts: tuple[str, ...] | None = None  # addresses to offer ICE candidates on; None: see app.py
    rtc_max_peers: int = 500  # peer connections in the whole server
    # Per session: above this many peers, state stays on the WebSocket. A data-channel delivery
    # costs the server 3.5-5.5x the CPU of a WebSocket one (aiortc's SCTP is Python): measured in
    # docs/benchmarks.md, worth it for the tail under loss only in small sessions.
    rtc_state_channel_max: int = 16
    rtc_state_repair: float = 0.25  # how soon the WebSocket repairs state sent over a data channel

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")
