"""Process entry point of the embedded (single-process) server, durable by default."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..auth import Verifier
from .clock import ServerClock
from .config import ServerConfig
from .gcpolicy import GcPolicy
from .hostlimits import raise_open_files, read_limits, short_limits
from .http import HttpApi
from .node import Node
from .sqlite_store import SqliteStore, StoreLocked
from .store import MemoryStore, Store
from .ws import WS_PATH, WsServer

if TYPE_CHECKING:
    from .sfu.hub import MediaHub

log = logging.getLogger("collective_sync")


class UnsafeDefault(RuntimeError):
    """Anonymous access asked for beyond loopback without saying so."""


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:  # the operator's JWKS URL
        return resp.read()


def _verifier(config: ServerConfig) -> Verifier | None:
    """The JWT verifier, or None for anonymous use, which is the default only on loopback: bound
    to any other address the server refuses to start unless told `allow_anonymous`."""
    if config.auth.enabled:
        return Verifier(config.auth, _fetch)
    if not config.loopback and not config.allow_anonymous:
        raise UnsafeDefault(
            f"listening on {config.host} with no authentication: configure --auth-jwt-secret or "
            "--auth-jwks-url/--auth-jwks-file, or pass --allow-anonymous to accept anyone"
        )
    return None


def _media_hub(node: Node, config: ServerConfig, clock: Callable[[], float]) -> MediaHub:
    """The SFU. ICE host candidates: `--rtc-host`, else loopback when serving on loopback
    (aioice skips it by default), else every interface."""
    from ..ice import restrict_host_addresses
    from .sfu.hub import MediaHub

    hosts = config.rtc_hosts
    if hosts is None and config.loopback:
        hosts = ("::1",) if config.host == "::1" else ("127.0.0.1",)
    restrict_host_addresses(hosts)
    loopback_only = hosts is not None and all(ipaddress.ip_address(h).is_loopback for h in hosts)
    return MediaHub(node, clock, config.rtc_max_peers, config.rtc_state_channel_max, loopback_only)


async def start(config: ServerConfig) -> tuple[WsServer, int]:
    """Build a node on the in-memory backplane and its store (SQLite under `data_dir`, or
    memory), restore what the store kept, and start serving; returns the bound port."""
    clock = ServerClock()
    store: Store
    if config.data_dir is None:
        store = MemoryStore()
    else:
        store = SqliteStore(config.data_dir, clock, config.sync, config.ended_retention)
    verifier = _verifier(config)
    node = Node(config, clock, store=store, verifier=verifier)
    if verifier is not None:
        loop = asyncio.get_running_loop()

        def refresh_keys(then: Callable[[], None]) -> None:
            task = loop.create_task(asyncio.to_thread(verifier.refresh))
            task.add_done_callback(lambda _: then())

        node.refresh_keys = refresh_keys
    if config.rtc:
        node.media = _media_hub(node, config, clock)
    node.restore()
    server = WsServer(node, HttpApi(node))
    port = await server.start(config.host, config.port)
    return server, port


async def serve(config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully (WsServer.stop): persist, tell every
    client 1001 so it reconnects and resumes, exit within `shutdown_timeout`."""
    files_advice = raise_open_files()  # before accepting anyone: a storm needs the descriptors
    server, port = await start(config)
    advice_lines = short_limits(read_limits())
    if files_advice is not None:
        advice_lines.append(files_advice)
    for advice in advice_lines:
        # On loopback (the demo, a developer's machine) it is a hint, not a fault.
        log.log(logging.INFO if config.loopback else logging.WARNING, "%s", advice)
    if config.gc_young:
        server.gc = GcPolicy(config.gc_young)
        server.gc.start()
    host = f"[{config.host}]" if ":" in config.host else config.host
    where = f"data in {config.data_dir}" if config.data_dir is not None else "in memory only"
    http, ws = ("https", "wss") if config.tls_cert is not None else ("http", "ws")
    print(
        f"Collective Sync ({where}) listening on {http}://{host}:{port} (WebSocket {ws}://{host}:{port}{WS_PATH})\n"
        f"Open {http}://{host}:{port}/ to start a session, and the invite link in another window to join.",
        flush=True,
    )
    if on_ready is not None:
        on_ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    if server.gc is not None:
        server.gc.stop()


def run(config: ServerConfig) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config))
    except StoreLocked as exc:
        print(f"collective-sync: {exc} (stop it first, or give another --data-dir)", file=sys.stderr)
        sys.exit(2)
    except UnsafeDefault as exc:
        print(f"collective-sync: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()
