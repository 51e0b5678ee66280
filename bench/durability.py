"""Durability benchmark: what the store costs, and how fast a crowd comes back after a restart.

1. Throughput, store on vs `--memory`: leaders (one session each) keep a window of requests in
   flight; controls are acknowledged only once durable (group commit), state updates at once
   (their snapshots are written throttled). Reports requests/s and ack latency percentiles for
   `--memory`, `--sync normal` and `--sync full` (fsync per commit).
2. Reconnect storm: N clients in one session, the server is stopped (SIGTERM) or killed
   (SIGKILL) and started again on its data; how long until every client has resumed as the
   same participant.

    python bench/durability.py --json bench/results/durability.json

The real server runs as a subprocess (`collective-sync serve`); the clients are bare protocol
clients (`Raw`) that reconnect with the SDKs' backoff, so that the server is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import re
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from collective_sync.client.backoff import backoff_delay

MODES: dict[str, list[str]] = {
    "memory": ["--memory"],
    "sqlite-normal": ["--sync", "normal"],
    "sqlite-full": ["--sync", "full"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, port: int, args: list[str]):
        self.data_dir, self.port, self.args = data_dir, port, args
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> float:
        """Start; returns the time (monotonic) it printed that it listens."""
        cmd = [sys.executable, "-m", "collective_sync", "serve", "--port", str(self.port)]
        if "--memory" not in self.args:
            cmd += ["--data-dir", str(self.data_dir)]
        cmd += ["--rate", "1e9", "--burst", "1000000000", "--log-level", "WARNING", *self.args]
        self.proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if b"listening" not in line:
            raise RuntimeError(f"the server did not start: {line!r}")
        return time.monotonic()

    async def stop(self, kill: bool = False) -> None:
        assert self.proc is not None
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        await self.proc.wait()


class _Reply(msgspec.Struct):
    type: str
    rid: int | None = None
    you: str = ""
    token: str = ""
    session: str = ""
    code: str = ""


_decode = msgspec.json.Decoder(_Reply | list[_Reply]).decode
_encode = msgspec.json.encode


class Raw(WSListener):
    """A bare protocol client: requests by rid, everything else decoded as little as possible
    (the clients share two cores with the server; the SDK's per-message work would be measured
    instead of the server's)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.welcome: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.waiting: dict[int, asyncio.Future[_Reply]] = {}
        self.rids = itertools.count(1)

    @classmethod
    async def open(cls, url: str) -> Raw:
        _, listener = await picows.ws_connect(cls, url)
        assert isinstance(listener, Raw)
        await asyncio.wait_for(listener.welcome, 10)
        return listener

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msgs = _decode(frame.get_payload_as_bytes())
        for m in msgs if isinstance(msgs, list) else (msgs,):
            if m.type == "welcome" and not self.welcome.done():
                self.welcome.set_result(None)
            elif m.rid is not None:
                fut = self.waiting.pop(m.rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(m)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        futures: list[asyncio.Future[Any]] = [self.welcome, self.closed, *self.waiting.values()]
        for fut in futures:
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))
                fut.exception()  # nobody may be waiting on it (mark it retrieved)

    async def request(self, msg: dict[str, Any]) -> _Reply:
        rid = next(self.rids)
        fut: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, _encode({**msg, "rid": rid}))
        return await asyncio.wait_for(fut, 30)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()


async def _pipeline(raw: Raw, sid: str, kind: str, seconds: float, window: int) -> list[float]:
    """Keep `window` requests in flight for `seconds`; returns each one's ack latency."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    n = 0

    async def one() -> None:
        nonlocal n
        while time.monotonic() < stop:
            n += 1
            t0 = time.perf_counter()
            msg: dict[str, Any]
            if kind == "control":
                msg = {"type": "control", "session": sid, "event": "step", "payload": {"i": n}}
            else:
                msg = {"type": "state_set", "session": sid, "at": time.time(), "set": {"geometry.R": n}}
            reply = await raw.request(msg)
            assert reply.type == "ack", reply
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(window)))
    return latencies


async def throughput(mode: str, leaders: int, window: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), free_port(), MODES[mode])
        await server.start()
        try:
            raws = [await Raw.open(server.url) for _ in range(leaders)]
            sids = [
                (await r.request({"type": "create", "name": f"L{k}"})).session for k, r in enumerate(raws)
            ]
            out: dict[str, Any] = {"mode": mode, "leaders": leaders, "window": window}
            for kind in ("control", "state"):
                commits_before = await asyncio.to_thread(_commits, server.port)
                lat = await asyncio.gather(
                    *(_pipeline(r, sid, kind, seconds, window) for r, sid in zip(raws, sids, strict=True))
                )
                every = np.array([x for ls in lat for x in ls])
                out[kind] = {
                    "per_second": round(len(every) / seconds),
                    "ack_p50_ms": round(float(np.percentile(every, 50)) * 1e3, 2),
                    "ack_p99_ms": round(float(np.percentile(every, 99)) * 1e3, 2),
                }
                commits = await asyncio.to_thread(_commits, server.port) - commits_before
                out[kind]["per_commit"] = round(len(every) / commits, 1) if commits else None
            for r in raws:
                r.close()
        finally:
            await server.stop()
    return out


def _commits(port: int) -> float:
    """The server's durable commits so far (its Prometheus counter)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(r"^collective_sync_store_commits_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _resume(url: str, sid: str, token: str, ready: float) -> tuple[float, int, str]:
    """Reconnect like the SDKs (same backoff), resume; returns (when, attempts, participant)."""
    attempt = 0
    while True:
        await asyncio.sleep(backoff_delay(attempt, random.random()))
        attempt += 1
        try:
            raw = await Raw.open(url)
            reply = await raw.request({"type": "join", "session": sid, "name": "x", "resume": token})
        except (OSError, ConnectionError, TimeoutError):
            continue
        assert reply.type == "joined", reply
        return time.monotonic() - ready, attempt, reply.you


async def storm(n: int, kill: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), free_port(), [])
        await server.start()
        raws: list[Raw] = []
        try:
            lead = await Raw.open(server.url)
            raws.append(lead)
            first = await lead.request({"type": "create", "name": "Leader"})
            sid = first.session
            joined = [first]
            for k in range(n - 1):
                raw = await Raw.open(server.url)
                raws.append(raw)
                joined.append(await raw.request({"type": "join", "session": sid, "name": f"P{k}"}))
            await server.stop(kill=kill)
            ready = await server.start()
            results = await asyncio.gather(*(_resume(server.url, sid, j.token, ready) for j in joined))
            took = np.array([t for t, _, _ in results])
            attempts = [a for _, a, _ in results]
            same = sum(you == j.you for (_, _, you), j in zip(results, joined, strict=True))
            return {
                "clients": n,
                "how": "sigkill" if kill else "sigterm",
                "all_resumed_s": round(float(took.max()), 2),
                "half_resumed_s": round(float(np.median(took)), 2),
                "same_participant": same,
                "attempts_p50": float(np.median(attempts)),
                "attempts_max": max(attempts),
            }
        finally:
            for r in raws:
                r.close()
            await server.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "throughput": [],
        "storm": [],
    }
    for leaders in (1, 16):
        for mode in MODES:
            r = await throughput(mode, leaders, args.window, args.seconds)
            print(json.dumps(r), file=sys.stderr)
            report["throughput"].append(r)
    for kill in (False, True):
        r = await storm(args.clients, kill)
        print(json.dumps(r), file=sys.stderr)
        report["storm"].append(r)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        "| leaders | store | controls/s | control ack p50 / p99 (ms) "
        "| state updates/s | state ack p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        c, s = r["control"], r["state"]
        per = f" ({c['per_commit']:g} per commit)" if c.get("per_commit") else ""
        lines.append(
            f"| {r['leaders']} | {r['mode']} | {c['per_second']:,}{per} "
            f"| {c['ack_p50_ms']} / {c['ack_p99_ms']} "
            f"| {s['per_second']:,} | {s['ack_p50_ms']} / {s['ack_p99_ms']} |"
        )
    lines += [
        "",
        "| restart | clients | half / all resumed after (s) | same participant | attempts p50 / max |",
        "|---|---|---|---|---|",
    ]
    for r in report["storm"]:
        lines.append(
            f"| {r['how']} | {r['clients']} | {r['half_resumed_s']} / {r['all_resumed_s']} "
            f"| {r['same_participant']} | {r['attempts_p50']:g} / {r['attempts_max']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput measurement")
    parser.add_argument("--window", type=int, default=32, help="requests in flight per leader")
    parser.add_argument("--clients", type=int, default=1000, help="clients in the reconnect storm")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        report = asyncio.run(run(args))
    else:
        report = uvloop.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    print(table(report), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
