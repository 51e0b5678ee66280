"""The README's start command: `collective-sync serve` as a real process."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

from support import ServerProcess

from collective_sync.client import Client


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


async def test_serve_command_runs_and_stops_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    try:
        await server.start()
        port = server.port
        assert f"http://127.0.0.1:{port}" in server.line and str(tmp_path) in server.line
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        # The demo a new user opens: the page and every module it imports, from the package.
        status, page = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/")
        assert status == 200
        assert b"<title>Collective Sync" in page
        modules = (
            "/demo/app.js",
            "/demo/panel.js",
            "/demo/forms.js",
            "/demo/visual.js",
            "/demo/presets.js",
            "/demo/app.css",
            "/gaa/player.js",
            "/gaa/worklet.js",
            "/vendor/qrcode.mjs",  # installed by scripts/test.sh, as scripts/serve.sh does
        )
        for module in modules:
            status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{module}")
            assert status == 200, module
        async with await Client.connect(server.url, reconnect=False) as client:
            session = await client.create("Ana", public=True)
            _, listed = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/api/sessions")
            assert [s["id"] for s in json.loads(listed)["sessions"]] == [session.id]
            await session.control("step", {"i": 1})  # acknowledged once durable
            _, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            commits = re.search(rb"^collective_sync_store_commits_total (\S+)$", metrics, re.MULTILINE)
            assert commits is not None and float(commits.group(1)) >= 1
            stopping = asyncio.create_task(server.stop())
            closed = await client.wait_closed(5)
            assert (closed.code, closed.reason) == (1001, "server restarting; reconnect and resume")
            assert await stopping == 0
        assert (tmp_path / "collective-sync.db").stat().st_size > 0
    finally:
        await server.cleanup()
