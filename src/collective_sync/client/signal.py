"""A one-shot "something changed" signal, re-armed by every waiter.

Why not asyncio.Condition: the SDK updates its views in transport callbacks (no coroutine, no
lock), and waiters only need "wake up and re-check your predicate".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Changed:
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        """Until the next `notify()`."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def until(self, predicate: Callable[[], bool], check: Callable[[], None], timeout: float) -> None:
        """Return once `predicate()` holds, calling `check()` (which may raise) before each wait."""
        async with asyncio.timeout(timeout):
            while not predicate():
                check()
                await self.wait()
