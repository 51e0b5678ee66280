"""The real `@supabase/realtime-js` in a Node process (tests/realtime/driver.mjs), driven from
Python tests: `await js.do("track", id="a", payload=...)` runs one client call and returns its
result; `await js.wait(...)` waits for an event the clients saw."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent / "realtime"
# supabase-js' browser build (the UMD bundle: a global `supabase` with createClient).
UMD = HERE / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"
TIMEOUT = 10.0
Event = dict[str, Any]


def require_node_modules() -> None:
    """The test command installs them (scripts/test.sh: npm ci); without them the test cannot run."""
    if shutil.which("node") is None or not (HERE / "node_modules" / "@supabase" / "realtime-js").is_dir():
        pytest.fail("tests/realtime/node_modules is missing: run ./scripts/test.sh (it runs npm ci)")


class RealtimeJs:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.events: list[Event] = []
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._reqs = itertools.count(1)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls) -> RealtimeJs:
        require_node_modules()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "driver.mjs"),
            cwd=HERE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        js = cls(proc)
        await js.wait(lambda e: e.get("ev") == "ready")
        return js

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            msg = json.loads(line)
            req = msg.get("req")
            if req is not None:
                fut = self._results.pop(req)
                if msg["ok"]:
                    fut.set_result(msg.get("value"))
                else:
                    fut.set_exception(RuntimeError(msg["error"]))
            else:
                self.events.append(msg)
                self._changed.set()

    async def do(self, op: str, **args: Any) -> Any:
        req = next(self._reqs)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[req] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, "req": req, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(fut, TIMEOUT)

    async def wait(self, match: Callable[[Event], bool], timeout: float = TIMEOUT, after: int = 0) -> Event:
        """The first event (from index `after`) that matches, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            seen = after
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    def seen(self, match: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.events if match(e)]

    async def subscribed(self, id: str, topic: str, after: int = 0, **config: Any) -> None:
        """Open a channel on client `id` and wait for SUBSCRIBED (failing on an error status)."""
        await self.do("channel", id=id, topic=topic, config=config)
        status = await self.wait(lambda e: e.get("id") == id and e.get("ev") == "status", after=after)
        assert status["status"] == "SUBSCRIBED", status

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


POLARITY: dict[str, Any] = {
    "lightChannel": {"enabled": True, "amplitude": 0.8, "phase": 0.0, "resonanceMode": "harmonic"},
    "darkChannel": {"enabled": True, "amplitude": 0.4, "phase": 3.14159, "resonanceMode": "chaotic"},
    "polarityBalance": -0.25,
    "darkEnergyDrift": {"driftRate": 0.01, "expansionFactor": 1.2},
}


def polarity(balance: float, at_ms: float | None = None) -> dict[str, Any]:
    """A `polarity_sync` payload as the app sends it: with `timestamp`, ms of network time."""
    import time

    return {**POLARITY, "polarityBalance": balance, "timestamp": at_ms or time.time() * 1000.0}


def rt_url(server: Any) -> str:
    """Where supabase-js' realtime client connects (it appends /websocket)."""
    return f"ws://127.0.0.1:{server.port}/realtime/v1"


def on(id: str, ev: str, **fields: Any) -> Callable[[Event], bool]:
    """Matcher: an event `ev` of client `id` whose fields equal `fields`."""
    return lambda e: e.get("id") == id and e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items())
