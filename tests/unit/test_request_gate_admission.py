"""The request gate queues WebSocket upgrades for admission, but never plain HTTP: a health
check or the page must not wait behind a join storm."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from collective_sync.server.tcp import RequestGate


class FakeTransport:
    def __init__(self) -> None:
        self.protocol: object = None

    def set_protocol(self, p: object) -> None:
        self.protocol = p

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


class FakeWs:
    """Records what picows would be given."""

    def __init__(self) -> None:
        self.buffer = bytearray(1 << 16)
        self.got = b""

    def connection_made(self, t: object) -> None:
        pass

    def get_buffer(self, n: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, n: int) -> None:
        self.got += bytes(self.buffer[:n])


def gate(queue: list[Callable[[], None]]) -> tuple[RequestGate, FakeTransport, list[FakeWs]]:
    made: list[FakeWs] = []

    def websocket() -> FakeWs:
        made.append(FakeWs())
        return made[-1]

    g = RequestGate(
        websocket,  # type: ignore[arg-type]
        lambda _t: (200, {}, 0),
        {},
        2.0,
        5.0,
        None,
        queue.append,
        frozenset({b"/ws"}),
    )
    t = FakeTransport()
    g.connection_made(t)  # type: ignore[arg-type]
    return g, t, made


async def test_upgrades_wait_their_turn_and_keep_what_arrived_meanwhile() -> None:
    queue: list[Callable[[], None]] = []
    g, _, made = gate(queue)
    g.data_received(b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\n")
    assert made == [] and len(queue) == 1  # queued, not handed over
    g.data_received(b"Upgrade: websocket\r\n\r\n")
    queue.pop()()
    assert made[0].got == b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    g.connection_lost(None)


async def test_plain_http_gets_are_never_queued() -> None:
    queue: list[Callable[[], None]] = []
    g, _, made = gate(queue)
    g.data_received(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert queue == [] and len(made) == 1
    g.connection_lost(None)


async def test_a_lost_connection_is_skipped_when_its_turn_comes() -> None:
    queue: list[Callable[[], None]] = []
    g, _, made = gate(queue)
    g.data_received(b"GET /ws HTTP/1.1\r\n")
    g.connection_lost(None)
    queue.pop()()
    assert made == []
    await asyncio.sleep(0)
