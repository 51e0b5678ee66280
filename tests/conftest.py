"""Shared fixtures: a real server on a loopback port in the test's event loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from rtjs import RealtimeJs
from support import make_config

from collective_sync.client import Client
from collective_sync.server.app import start
from collective_sync.server.config import ServerConfig
from collective_sync.server.hostlimits import raise_open_files
from collective_sync.server.ws import WsServer

logging.getLogger("picows").setLevel(logging.WARNING)
# Tests host servers (each with its listening sockets) and hundreds of clients in this process:
# it takes the open-files limit a served process takes (app.serve), not a shell's soft 1,024.
raise_open_files()


@dataclass
class RunningServer:
    server: WsServer
    port: int
    config: ServerConfig

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def client(self, **kwargs: object) -> Client:
        return await Client.connect(self.url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def server_config() -> ServerConfig:
    """Override in a test module (with `make_config(...)`) to change limits."""
    return make_config()


@pytest.fixture
async def server(server_config: ServerConfig) -> AsyncIterator[RunningServer]:
    ws, port = await start(server_config)
    try:
        yield RunningServer(ws, port, server_config)
    finally:
        await ws.stop()


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[..., object]]:
    """`await connect()` opens a client to the test server; all are closed at the end."""
    clients: list[Client] = []

    async def _connect(**kwargs: object) -> Client:
        c = await server.client(**kwargs)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        if not c.closed:
            await c.close()


@pytest.fixture
async def js() -> AsyncIterator[RealtimeJs]:
    """The real `@supabase/realtime-js` in Node (tests/rtjs.py)."""
    driver = await RealtimeJs.start()
    yield driver
    await driver.close()
