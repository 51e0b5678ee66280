"""The server's clock: the network time every client converges to.

Epoch-based so that it means the same on every node of a cluster, but advanced by the
monotonic clock so that it never steps when the host's wall clock is adjusted.
"""

from __future__ import annotations

import time


class ServerClock:
    __slots__ = ("_base", "_mono0")

    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._base = time.time()

    def __call__(self) -> float:
        return self._base + (time.monotonic() - self._mono0)
