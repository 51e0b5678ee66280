"""The README's start command: `collective-sync serve` as a real process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import urllib.request
from pathlib import Path

from collective_sync.client import Client


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


async def test_serve_command_runs_and_stops_cleanly(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collective_sync",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        # The demo a new user opens: the page and every module it imports, from the package.
        status, page = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/")
        assert status == 200
        assert b"<title>Collective Sync" in page
        modules = ("/demo/app.js", "/demo/panel.js", "/demo/app.css", "/gaa/player.js", "/gaa/worklet.js")
        for module in modules:
            status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{module}")
            assert status == 200, module
        assert str(tmp_path) in line  # says where its data lives
        async with await Client.connect(f"ws://127.0.0.1:{port}/ws", reconnect=False) as client:
            session = await client.create("Ana", public=True)
            _, listed = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/api/sessions")
            assert [s["id"] for s in json.loads(listed)["sessions"]] == [session.id]
            await session.control("step", {"i": 1})  # acknowledged once durable
            _, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            commits = re.search(rb"^collective_sync_store_commits_total (\S+)$", metrics, re.MULTILINE)
            assert commits is not None and float(commits.group(1)) >= 1
            proc.send_signal(signal.SIGTERM)
            closed = await client.wait_closed(5)
            assert (closed.code, closed.reason) == (1001, "server restarting; reconnect and resume")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert (tmp_path / "collective-sync.db").stat().st_size > 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
