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


def free_port() -> int:
    """A loopback port nobody listens on now (a restarted server must come back on the same)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`collective-sync serve` as a real process on a fixed port and data directory, to be
    stopped (SIGTERM), killed (SIGKILL) and started again as a deploy or a crash would."""

    def __init__(self, data_dir: object, port: int | None = None, *args: str):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.args = args
        self.proc: object = None
        self.line = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, timeout: float = 20.0) -> None:
        """Start and wait for the "listening" line (the store is recovered by then)."""
        import asyncio
        import sys

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collective_sync",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "WARNING",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
        )
        self.proc = proc
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        assert f":{self.port}" in line, line
        self.line = line  # what it printed: where it listens, where its data lives

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit; returns the exit status."""
        import asyncio
        import signal

        proc = self.proc
        assert isinstance(proc, asyncio.subprocess.Process)
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), timeout)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing gets to run."""
        import asyncio

        proc = self.proc
        assert isinstance(proc, asyncio.subprocess.Process)
        proc.kill()
        await proc.wait()

    async def cleanup(self) -> None:
        import asyncio

        proc = self.proc
        if isinstance(proc, asyncio.subprocess.Process) and proc.returncode is None:
            proc.kill()
            await proc.wait()
