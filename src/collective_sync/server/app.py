"""Process entry point of the embedded (single-process) server, durable by default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from .clock import ServerClock
from .config import ServerConfig
from .http import HttpApi
from .node import Node
from .sqlite_store import SqliteStore, StoreLocked
from .store import MemoryStore, Store
from .ws import WS_PATH, WsServer

log = logging.getLogger("collective_sync")


async def start(config: ServerConfig) -> tuple[WsServer, int]:
    """Build a node on the in-memory backplane and its store (SQLite under `data_dir`, or
    memory), restore what the store kept, and start serving; returns the bound port."""
    clock = ServerClock()
    store: Store
    if config.data_dir is None:
        store = MemoryStore()
    else:
        store = SqliteStore(config.data_dir, clock, config.sync, config.ended_retention)
    node = Node(config, clock, store=store)
    node.restore()
    server = WsServer(node, HttpApi(node))
    port = await server.start(config.host, config.port)
    return server, port


async def serve(config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully (WsServer.stop): persist, tell every
    client 1001 so it reconnects and resumes, exit within `shutdown_timeout`."""
    server, port = await start(config)
    host = f"[{config.host}]" if ":" in config.host else config.host
    where = f"data in {config.data_dir}" if config.data_dir is not None else "in memory only"
    print(
        f"Collective Sync ({where}) listening on http://{host}:{port} (WebSocket ws://{host}:{port}{WS_PATH})\n"
        f"Open http://{host}:{port}/ to start a session, and the invite link in another window to join.",
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
    sys.stdout.flush()
