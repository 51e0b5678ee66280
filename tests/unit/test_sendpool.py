"""SendPool with real socket pairs: every frame arrives whole and framed, sockets that may not
be written directly are handed back, and what the kernel did not take goes back to the sink."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest

from collective_sync.server.sendpool import SendPool, ws_frame


@dataclass
class Sink:
    sock: socket.socket | None
    sent: list[tuple[bytes, bytes]] = field(default_factory=list)

    def raw_fd(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def sent_raw(self, frame: bytes, rest: bytes) -> None:
        self.sent.append((frame, rest))


@pytest.fixture
def pairs():
    made = [socket.socketpair() for _ in range(40)]
    for a, _ in made:
        a.setblocking(False)
    yield made
    for a, b in made:
        a.close()
        b.close()


def test_frames_reach_every_socket_from_several_threads(pairs) -> None:
    pool = SendPool(threads=3, min_batch=1)
    try:
        payload = b'{"type":"state"}'
        sinks = [Sink(a) for a, _ in pairs] + [Sink(None)]
        left = pool.send([(s, payload) for s in sinks])
        assert left == [(sinks[-1], payload)]  # no raw socket: for its own send_frame
        for (_, b), s in zip(pairs, sinks, strict=False):
            assert b.recv(100) == b"\x81" + bytes([len(payload)]) + payload
            assert s.sent == [(payload, b"")]
    finally:
        pool.close()


def test_what_the_kernel_did_not_take_goes_back_to_the_sink(pairs) -> None:
    pool = SendPool(threads=2, min_batch=1)
    try:
        a, b = pairs[0]
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"x" * 2_000_000
        sink = Sink(a)
        pool.send([(sink, big)])
        (frame, rest) = sink.sent[0]
        framed = ws_frame(big)
        assert frame is big
        assert 0 < len(rest) < len(framed)
        got = b""
        b.setblocking(False)
        while True:
            try:
                chunk = b.recv(1 << 20)
            except BlockingIOError:
                break
            got += chunk
        assert got + rest == framed  # the written part, then the rest, is the whole frame
    finally:
        pool.close()


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_frame_headers(n: int) -> None:
    f = ws_frame(b"a" * n)
    if n < 126:
        assert f[:2] == bytes((0x81, n))
    elif n < 65536:
        assert f[:4] == bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        assert f[:10] == bytes((0x81, 127)) + n.to_bytes(8, "big")
    assert len(f) - n in (2, 4, 10)
