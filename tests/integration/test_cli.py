"""The README's start command: `collective-sync serve` as a real process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

from collective_sync.client import Client


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


async def test_serve_command_runs_and_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collective_sync", "serve", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        async with await Client.connect(f"ws://127.0.0.1:{port}/ws") as client:
            session = await client.create("Ana", public=True)
            _, listed = _get(f"http://127.0.0.1:{port}/api/sessions")
            assert [s["id"] for s in json.loads(listed)["sessions"]] == [session.id]
            proc.send_signal(signal.SIGTERM)
            closed = await client.wait_closed(5)
            assert closed.code == 1001
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
