"""What the Supabase Realtime-compatible endpoint costs: one native leader sends controls to N
receivers that are either native clients or Realtime (Phoenix 2.0.0) clients.

Same method as bench/fanout.py (whose server start and phases it reuses): the real server as a
subprocess, receivers in worker processes, every control stamped with its send time as `at`,
so arrival - `at` is the end-to-end latency (one machine, one clock). The Realtime receivers
read that `at` back from the broadcast's `timestamp` (ms). Prints JSON.

    python bench/realtime_fanout.py --clients 200 --procs 2 --rates 20,50 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import numpy as np
import picows
from fanout import WARMUP_S, Phase, machine, plan, report, spawn, start_server, stop
from picows import WSFrame, WSListener, WSMsgType, WSTransport

_decode = msgspec.json.Decoder().decode


class _Receiver(WSListener):
    """Records (at, arrival) of every control: native `control`, or Realtime `broadcast`."""

    def __init__(self, sink: array, ready: asyncio.Future[None], realtime: bool):
        self.sink, self.ready, self.realtime = sink, ready, realtime

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.time()
        data = _decode(frame.get_payload_as_bytes())
        if self.realtime:
            event, payload = data[3], data[4]
            if event == "broadcast":
                self.sink.extend((payload["payload"]["timestamp"] / 1000.0, now))
            elif event == "phx_reply" and not self.ready.done():
                self.ready.set_result(None)
            return
        for m in data if isinstance(data, list) else [data]:
            if m["type"] == "control":
                self.sink.extend((m["at"], now))
            elif m["type"] == "joined" and not self.ready.done():
                self.ready.set_result(None)


async def _receivers(port: int, session: str, count: int, realtime: bool, pipe: Connection) -> None:
    sink = array("d")
    transports = []
    for i in range(count):
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        listener = _Receiver(sink, ready, realtime)
        if realtime:
            url = f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey=k&vsn=2.0.0"
            transport, _ = await picows.ws_connect(lambda lst=listener: lst, url)
            join = ["1", "1", f"realtime:collective-session-{session}", "phx_join", {"config": {}}]
            transport.send(WSMsgType.TEXT, msgspec.json.encode(join))
        else:
            transport, _ = await picows.ws_connect(lambda lst=listener: lst, f"ws://127.0.0.1:{port}/ws")
            join_msg = {"type": "join", "session": session, "name": f"r{i}", "role": "observer", "rid": 1}
            transport.send(WSMsgType.TEXT, msgspec.json.encode(join_msg))
        await asyncio.wait_for(ready, 30)
        transports.append(transport)
    await report(sink, transports, pipe)


def _receiver_main(port: int, session: str, count: int, realtime: bool, pipe: Connection) -> None:
    import uvloop

    uvloop.run(_receivers(port, session, count, realtime, pipe))


class _Leader(WSListener):
    def __init__(self) -> None:
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self.joined.done() and b'"joined"' in frame.get_payload_as_bytes():
            self.joined.set_result(None)


async def _send(transport: WSTransport, session: str, ph: Phase) -> int:
    period, k, sent = 1.0 / ph.rate, 0, 0
    start = ph.start - WARMUP_S
    prefix = b'{"type":"control","session":"' + session.encode() + b'","event":"cue","payload":{"k":'
    while (deadline := start + k * period) < ph.end:
        await asyncio.sleep(max(0.0, deadline - time.time()))
        at = time.time()
        transport.send(WSMsgType.TEXT, prefix + b'%d},"at":%.6f}' % (k, at))
        sent += at >= ph.start
        k += 1
    return sent


async def run(kind: str, clients: int, procs: int, rates: list[float], duration: float) -> dict[str, Any]:
    server = start_server()
    workers: list[BaseProcess] = []
    session = f"bench{kind}"
    try:
        leader = _Leader()
        transport, _ = await picows.ws_connect(lambda: leader, f"ws://127.0.0.1:{server.port}/ws")
        create = {"type": "create", "name": "lead", "settings": {"sessionId": session}, "rid": 1}
        transport.send(WSMsgType.TEXT, msgspec.json.encode(create))
        await asyncio.wait_for(leader.joined, 10)
        realtime = kind == "realtime"

        def job(n: int, pipe: Connection) -> tuple[Any, tuple[Any, ...]]:
            return _receiver_main, (server.port, session, n, realtime, pipe)

        pipes = await spawn(workers, clients, procs, job)
        rss_joined = server.rss_mb()
        phases = plan(pipes, rates, duration)
        sent, cpu = [], []
        for ph in phases:
            await asyncio.sleep(max(0.0, ph.start - WARMUP_S - time.time()))
            cpu0, t0 = server.cpu_seconds(), time.time()
            sent.append(await _send(transport, session, ph))
            cpu.append(100 * (server.cpu_seconds() - cpu0) / (time.time() - t0))
        per_proc = [await asyncio.to_thread(p.recv) for p in pipes]
        transport.disconnect()
    finally:
        stop(server, workers)
    results = []
    for i, ph in enumerate(phases):
        lat = np.concatenate([pp[i] for pp in per_proc]) * 1000.0
        p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
        results.append(
            {
                "rate_hz": ph.rate,
                "delivery_ratio": round(lat.size / (sent[i] * clients), 5),
                "latency_ms": {"p50": round(float(p50), 2), "p99": round(float(p99), 2)},
                "server_cpu_percent": round(cpu[i], 1),
            }
        )
    rss = round(rss_joined, 1)
    return {"receivers": kind, "clients": clients, "server_rss_mb_joined": rss, "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--rates", default="20,50")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--out", help="write the JSON report here too")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    kinds = ("native", "realtime")
    runs = [asyncio.run(run(kind, args.clients, args.procs, rates, args.duration)) for kind in kinds]
    report = {"benchmark": "realtime_fanout", "duration_s": args.duration, "machine": machine(), "runs": runs}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
