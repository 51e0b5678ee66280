"""Process entry point of the embedded (single-process, in-memory) server."""

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
from .ws import WS_PATH, WsServer

log = logging.getLogger("collective_sync")


async def start(config: ServerConfig) -> tuple[WsServer, int]:
    """Build a node on the in-memory backplane and start serving it; returns the bound port."""
    node = Node(config, ServerClock())
    server = WsServer(node, HttpApi(node))
    port = await server.start(config.host, config.port)
    return server, port


async def serve(config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then close every connection with 1001 (going away)."""
    server, port = await start(config)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(
        f"Collective Sync listening on http://{host}:{port} (WebSocket ws://{host}:{port}{WS_PATH})\n"
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
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
    sys.stdout.flush()
