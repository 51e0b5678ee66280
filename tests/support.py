"""Helpers shared by test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collective_sync.server.config import ServerConfig


def make_config(**overrides: object) -> ServerConfig:
    """Test settings: any free port, short grace/ttl so lifecycle tests are quick."""
    settings: dict[str, object] = {"port": 0, "session_ttl": 0.5, "tick_interval": 0.02, **overrides}
    config = ServerConfig(**settings)  # type: ignore[arg-type]
    config.session.grace_period = 0.3
    return config


class LoopLag:
    """Measures how late this event loop wakes up (CPU starvation on a busy machine).

    A test of real-time behaviour can then tell a change applied late because the process was
    not running (the loop woke late) from one the product scheduled for the wrong instant.
    """

    def __init__(self, period: float = 0.002):
        import asyncio

        self.period = period
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import asyncio
        import time

        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.period)  # the probe itself: how late does this wake up?
            self.worst = max(self.worst, time.perf_counter() - start - self.period)

    def stop(self) -> None:
        self._task.cancel()
