"""A join storm must not wait in the kernel's accept queue while event-loop turns are long.

uvloop (the served loop) accepts one connection per listening socket per loop turn; once a
fan-out to thousands makes each turn last ~80 ms, that was ~12 joins a second. The port has
`acceptors` sockets (SO_REUSEPORT), so each turn accepts up to that many. Counted in loop turns
(each `sleep(0)` is one), not in time, so a busy machine changes nothing.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

import uvloop
from support import make_config

from collective_sync.server.app import start

WAITING = 64  # connections the kernel completed while the loop was busy
TURNS = 3


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def accepted_after_turns(acceptors: int) -> int:
    """Connect WAITING clients while the loop cannot run (the kernel completes them), then let
    the loop take TURNS turns; returns how many the server accepted."""
    ws, port = await start(make_config(acceptors=acceptors))
    socks: list[socket.socket] = []
    try:
        for _ in range(WAITING):  # blocking connects: the loop does not run in between
            socks.append(socket.create_connection(("127.0.0.1", port)))
        before = open_fds()
        for _ in range(TURNS):
            await asyncio.sleep(0)
        return open_fds() - before
    finally:
        for s in socks:
            s.close()
        await ws.stop()


# Plain functions run on uvloop, the loop the server is served on (not pytest-asyncio's).
def test_many_waiting_connections_are_accepted_within_a_few_turns() -> None:
    assert uvloop.run(accepted_after_turns(32)) >= WAITING // 2


def test_one_listening_socket_accepts_only_one_per_turn() -> None:
    """Why the acceptors exist: if uvloop ever accepts more per turn, they can go."""
    assert uvloop.run(accepted_after_turns(1)) <= TURNS


async def _second_server_on_the_same_port() -> OSError | None:
    ws, port = await start(make_config())
    try:
        other, _ = await start(make_config(port=port))
    except OSError as exc:
        return exc
    finally:
        await ws.stop()
    await other.stop()
    return None


def test_a_port_a_server_listens_on_is_refused_to_a_second_one() -> None:
    """SO_REUSEPORT alone would let the second join the first's port and share its clients."""
    refused = uvloop.run(_second_server_on_the_same_port())
    assert refused is not None and refused.errno == errno.EADDRINUSE
