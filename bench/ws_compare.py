"""Which WebSocket library should the server use? Measure broadcast fan-out, our hot path.

For each library (picows, websockets, aiohttp; all under uvloop) a minimal server process
accepts N clients and broadcasts a ~150-byte text message to all of them, as fast as it can
(one broadcast per event-loop turn) for a fixed time. The receivers are identical for every
library (bare picows listeners in one other process), so the difference is the server side:
deliveries per second and server CPU seconds per 100k deliveries.

    python bench/ws_compare.py --clients 500 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

PAYLOAD = b"x" * 150


# --- servers: each returns (deliveries, cpu_seconds) after `duration` of broadcasting ---------


async def _broadcast_loop(send_all: Any, clients: list[Any], duration: float) -> tuple[int, float]:
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    end = time.monotonic() + duration
    sent = 0
    while time.monotonic() < end:
        send_all(clients, PAYLOAD)
        sent += len(clients)
        await asyncio.sleep(0)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return sent, (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)


async def serve_picows(n: int, duration: float, pipe: Connection) -> None:
    clients: list[WSTransport] = []
    ready = asyncio.Event()

    class L(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.append(transport)
            if len(clients) == n:
                ready.set()

    server = await picows.ws_create_server(lambda _r: L(), "127.0.0.1", 0)
    pipe.send(server.sockets[0].getsockname()[1])
    await ready.wait()
    pipe.recv()

    def send_all(cs: list[WSTransport], data: bytes) -> None:
        for c in cs:
            c.send(WSMsgType.TEXT, data)

    pipe.send(await _broadcast_loop(send_all, clients, duration))


async def serve_websockets(n: int, duration: float, pipe: Connection) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients: list[Any] = []
    ready = asyncio.Event()

    async def handler(ws: Any) -> None:
        clients.append(ws)
        if len(clients) == n:
            ready.set()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        pipe.send(next(iter(server.sockets)).getsockname()[1])
        await ready.wait()
        pipe.recv()
        # broadcast() is the library's fan-out primitive: one frame encoding, no await per client.
        pipe.send(await _broadcast_loop(lambda cs, d: broadcast(cs, d.decode()), clients, duration))


async def serve_aiohttp(n: int, duration: float, pipe: Connection) -> None:
    from aiohttp import web

    clients: list[web.WebSocketResponse] = []
    ready = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        clients.append(ws)
        if len(clients) == n:
            ready.set()
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pipe.send(site._server.sockets[0].getsockname()[1])
    await ready.wait()
    pipe.recv()

    def send_all(cs: list[web.WebSocketResponse], data: bytes) -> None:
        # send_str is a coroutine; its write completes synchronously when the buffer has room,
        # so driving each one step is the cheapest correct use short of private APIs.
        text = data.decode()
        for c in cs:
            coro = c.send_str(text)
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:  # pragma: no cover - only under backpressure
                _pending.add(asyncio.ensure_future(_finish(coro)))

    pipe.send(await _broadcast_loop(send_all, clients, duration))
    await runner.cleanup()


_pending: set[asyncio.Future[None]] = set()


async def _finish(coro: Any) -> None:
    await coro


SERVERS = {"picows": serve_picows, "websockets": serve_websockets, "aiohttp": serve_aiohttp}


def _server_main(lib: str, n: int, duration: float, pipe: Connection) -> None:
    import uvloop

    uvloop.run(SERVERS[lib](n, duration, pipe))


# --- receivers -------------------------------------------------------------------------------


class _Counter(WSListener):
    count = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            _Counter.count += 1


async def _receive(port: int, n: int, pipe: Connection) -> None:
    transports = [(await picows.ws_connect(_Counter, f"ws://127.0.0.1:{port}/"))[0] for _ in range(n)]
    pipe.send("ready")
    await asyncio.to_thread(pipe.recv)  # keep the loop receiving while we wait for "stop"
    for t in transports:
        t.disconnect()
    pipe.send(_Counter.count)


def _receiver_main(port: int, n: int, pipe: Connection) -> None:
    import uvloop

    uvloop.run(_receive(port, n, pipe))


def measure(lib: str, n: int, duration: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    server = ctx.Process(target=_server_main, args=(lib, n, duration, s_child), daemon=True)
    server.start()
    receiver = None
    try:
        if not s_parent.poll(30):
            raise RuntimeError(f"{lib} server did not start")
        port = s_parent.recv()
        receiver = ctx.Process(target=_receiver_main, args=(port, n, r_child), daemon=True)
        receiver.start()
        if not r_parent.poll(60):
            raise RuntimeError("receivers did not connect")
        r_parent.recv()
        s_parent.send("go")
        if not s_parent.poll(duration + 60):
            raise RuntimeError(f"{lib} server did not finish")
        sent, cpu = s_parent.recv()
        r_parent.send("stop")
        received = r_parent.recv() if r_parent.poll(60) else 0
    finally:
        for p in (server, receiver):
            if p is not None:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
    return {
        "library": lib,
        "clients": n,
        "duration_s": duration,
        "sent": sent,
        "received": received,
        "deliveries_per_s": round(received / duration),
        "server_cpu_s_per_100k": round(cpu / max(sent, 1) * 100_000, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--libs", default="picows,websockets,aiohttp")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    results = [measure(lib, args.clients, args.duration) for lib in args.libs.split(",")]
    text = json.dumps({"benchmark": "ws_compare", "results": results}, indent=2)
    print(text)
    lines = ["| library | deliveries/s received | server CPU s per 100k sent |", "|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r['library']} | {r['deliveries_per_s']:,} | {r['server_cpu_s_per_100k']} |")
    print("\n".join(lines), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
