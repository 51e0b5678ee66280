"""Fan-out writes on more than one core.

Past a few thousand receivers, what a fan-out costs the server is almost all the kernel's
`send` (one per receiver and turn; on loopback it includes the receiving side's TCP work), and
the event loop makes every one of them with the GIL held. Here a large flush's writes are split
among threads: `os.write` releases the GIL for the system call, so the calls run on several cores
at once. The event-loop thread takes a share and waits for the others, so no other code touches
these sockets meanwhile; a socket only goes this way while its transport has nothing queued
(order is kept), and what the kernel did not take goes back to the transport, on the loop thread.

No library does this: picows and uvloop write from the loop thread only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol


class RawSink(Protocol):
    """A connection whose frames may be written to its socket directly."""

    def raw_fd(self) -> int: ...  # -1: not now (TLS, closing, or bytes queued in the transport)
    def sent_raw(self, frame: bytes, rest: bytes) -> None: ...  # after the batch: `rest` unsent


def ws_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server to client, RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def _write_all(jobs: Sequence[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Write each (fd, data); return (index, bytes written) of those not written in full."""
    short: list[tuple[int, int]] = []
    write = os.write
    for i, (fd, data) in enumerate(jobs):
        try:
            n = write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError:  # reset or gone: the transport finds out on its own
            n = len(data)
        if n < len(data):
            short.append((i, n))
    return short


class SendPool:
    def __init__(self, threads: int, min_batch: int):
        self.threads = threads  # including the event-loop thread
        self.min_batch = min_batch  # smaller flushes are written by the loop thread alone
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="send") if threads > 1 else None
        self.batches = 0

    def send(self, pairs: Sequence[tuple[RawSink, bytes]]) -> list[tuple[RawSink, bytes]]:
        """Write every (sink, payload) it can in parallel; return the pairs left for the sinks'
        own `send_frame` (no raw socket now). Frames are built once per distinct payload."""
        framed: dict[int, bytes] = {}
        jobs: list[tuple[int, bytes]] = []
        targets: list[tuple[RawSink, bytes]] = []
        left: list[tuple[RawSink, bytes]] = []
        for sink, payload in pairs:
            fd = sink.raw_fd()
            if fd < 0:
                left.append((sink, payload))
                continue
            data = framed.get(id(payload))
            if data is None:
                data = framed[id(payload)] = ws_frame(payload)
            jobs.append((fd, data))
            targets.append((sink, payload))
        if jobs:
            self.batches += 1
            shares = self._split(jobs)
            futures = [self._pool.submit(_write_all, s) for s in shares[1:]] if self._pool else []
            short = _write_all(shares[0])
            offset = len(shares[0])
            for share, fut in zip(shares[1:], futures, strict=True):
                short += [(offset + i, n) for i, n in fut.result()]
                offset += len(share)
            rest = dict(short)
            for i, (sink, payload) in enumerate(targets):
                n = rest.get(i)
                sink.sent_raw(payload, b"" if n is None else jobs[i][1][n:])
        return left

    def _split(self, jobs: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
        k = self.threads if self._pool is not None else 1
        size = -(-len(jobs) // k)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)] or [[]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
