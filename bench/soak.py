"""Soak: does the server give memory back after abrupt disconnects and a peer that never reads?

A real server process on loopback; its resident memory (VmRSS) is read from /proc between phases:
1. `--rounds` rounds of `--conns` WebSocket connections that join sessions (groups of
   `--per-session`) and are then dropped with a TCP reset, no close handshake; after each round
   we wait until the server counts no connection and no session (grace period and session TTL
   over) and read RSS.
2. one leader sends `--feed-mb` MB of controls into a session where one peer never reads; the
   server must close that peer (4002) once and then queue nothing more for it.

    python bench/soak.py --json bench/results/soak.json

Prints a table; the JSON holds every reading. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
        return json.loads(resp.read())


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def settle(port: int, timeout: float = 60.0) -> float:
    """Wait until the server holds no connection and no session; seconds it took."""
    start = time.monotonic()
    while True:
        h = await asyncio.to_thread(healthz, port)
        if h["connections"] == 0 and h["sessions"] == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"server did not settle: {h}")
        await asyncio.sleep(0.1)


async def recv_json(ws: ClientConnection) -> list[dict[str, Any]]:
    decoded = json.loads(await ws.recv())
    return decoded if isinstance(decoded, list) else [decoded]


async def until(ws: ClientConnection, pred: Any) -> dict[str, Any]:
    while True:
        for msg in await recv_json(ws):
            if pred(msg):
                return msg


async def open_joined(url: str, session: str | None, name: str) -> tuple[ClientConnection, str]:
    ws = await connect(url, ping_interval=None, max_queue=None)
    await recv_json(ws)  # welcome
    if session is None:
        await ws.send(json.dumps({"type": "create", "name": name, "rid": 1}))
    else:
        await ws.send(json.dumps({"type": "join", "session": session, "name": name, "rid": 1}))
    joined = await until(ws, lambda m: m.get("rid") == 1)
    assert joined["type"] == "joined", joined
    return ws, joined["session"]


async def churn_round(url: str, conns: int, per_session: int, pid: int) -> float:
    """Open `conns` connections in sessions of `per_session`, then reset them all at once; the
    server's RSS while they were all connected."""
    sockets: list[ClientConnection] = []
    for _ in range(conns // per_session):
        leader, sid = await open_joined(url, None, "lead")
        sockets.append(leader)
        rest = await asyncio.gather(*(open_joined(url, sid, "p") for _ in range(per_session - 1)))
        sockets.extend(ws for ws, _ in rest)
    loaded = rss_mb(pid)
    for ws in sockets:
        ws.transport.abort()  # TCP reset: no close frame, no FIN
    return loaded


async def feed_non_reader(url: str, megabytes: int) -> dict[str, Any]:
    """A leader sends `megabytes` MB of controls; one member never reads a byte."""
    leader, sid = await open_joined(url, None, "lead")
    sleeper = await connect(url, ping_interval=None, max_queue=1)  # stops reading at once
    await sleeper.send(json.dumps({"type": "join", "session": sid, "name": "zzz", "role": "observer"}))
    blob = "x" * 60_000
    sent = 0
    rid = 10
    while sent < megabytes * 1_000_000:
        rid += 1  # one at a time, acknowledged: the leader itself keeps up with its echoes
        await leader.send(
            json.dumps({"type": "control", "session": sid, "event": "e", "payload": blob, "rid": rid})
        )
        await until(leader, lambda m, r=rid: m.get("rid") == r)
        sent += len(blob)
    await leader.close()
    sleeper.transport.abort()
    return {"sent_mb": sent / 1e6}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "collective_sync.cli", "serve", "--port", "0", "--memory",
        "--grace", "0.5", "--session-ttl", "0.5", "--rate", "100000", "--burst", "100000",
        "--log-level", "WARNING",
    ]  # fmt: skip
    # A blocking Popen is fine here: it starts the server before any client exists.
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert server.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:(\d+)", server.stdout.readline())
        assert match, "server did not print its port"
        port = int(match.group(1))
        url = f"ws://127.0.0.1:{port}/ws"
        out: dict[str, Any] = {"cold_rss_mb": rss_mb(server.pid), "rounds": []}
        await churn_round(url, args.conns, args.per_session, server.pid)  # warm-up: pools, caches, imports
        await settle(port)
        out["baseline_rss_mb"] = baseline = rss_mb(server.pid)
        for i in range(args.rounds):
            t0 = time.monotonic()
            peak = await churn_round(url, args.conns, args.per_session, server.pid)
            settled = await settle(port)
            out["rounds"].append(
                {
                    "round": i + 1,
                    "seconds": round(time.monotonic() - t0, 2),
                    "settle_s": round(settled, 2),
                    "rss_mb_loaded": round(peak, 1),
                    "rss_mb_after": round(rss_mb(server.pid), 1),
                }
            )
            print(f"round {i + 1}: loaded {peak:.1f} MB, after {out['rounds'][-1]['rss_mb_after']:.1f} MB")
        before_feed = rss_mb(server.pid)
        feed = await feed_non_reader(url, args.feed_mb)
        await settle(port)
        feed.update(
            rss_mb_before=round(before_feed, 1),
            rss_mb_after=round(rss_mb(server.pid), 1),
            slow_consumer_closes=metric(port, "collective_sync_slow_consumer_closes_total"),
        )
        out["non_reader"] = feed
        final = rss_mb(server.pid)
        out["final_rss_mb"] = round(final, 1)
        out["growth_mb"] = round(final - baseline, 1)
        return out
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
        out_err = [line for line in stderr.splitlines() if "Traceback" in line]
        if out_err:
            print("server tracebacks:", len(out_err), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--conns", type=int, default=2_000)
    parser.add_argument("--per-session", type=int, default=50)
    parser.add_argument("--feed-mb", type=int, default=100)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    report["config"] = vars(args) | {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    rounds = report["rounds"]
    print("\n| phase | RSS (MB) |\n|---|---:|")
    print(f"| cold start | {report['cold_rss_mb']:.1f} |")
    print(f"| baseline (after a warm-up round) | {report['baseline_rss_mb']:.1f} |")
    print(
        f"| with {args.conns} connected (max over rounds) | {max(r['rss_mb_loaded'] for r in rounds):.1f} |"
    )
    print(f"| after each round (min-max) | {min(r['rss_mb_after'] for r in rounds):.1f}-"
          f"{max(r['rss_mb_after'] for r in rounds):.1f} |")  # fmt: skip
    nr = report["non_reader"]
    closes = nr["slow_consumer_closes"]
    print(f"| after {nr['sent_mb']:.0f} MB to a non-reader ({closes:.0f} close) | {nr['rss_mb_after']:.1f} |")
    print(f"| growth, final vs baseline | {report['growth_mb']:+.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
