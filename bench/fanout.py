"""Fan-out benchmark: one leader, N receivers in one session, state updates at fixed rates.

Starts the real server (`collective-sync serve`) as a subprocess, puts N receiving WebSocket
clients in K worker processes, and has the leader send `state_set` at each rate of a sweep for
a fixed window. Every update is stamped with the sender's time; all processes share one clock,
so arrival - `at` is the end-to-end latency. Prints JSON (one result per rate).

    python bench/fanout.py --clients 1000 --procs 2 --rates 60,240,480 --duration 10

Receivers are bare picows listeners that decode only `type` and `at`: the receiving side
shares this machine's cores with the server, so it must cost as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import numpy as np
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

WARMUP_S = 1.0
DRAIN_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class _Msg(msgspec.Struct):
    type: str
    at: float = 0.0
    session: str = ""


_decode = msgspec.json.Decoder(_Msg | list[_Msg]).decode


@dataclass
class Phase:
    rate: float
    start: float  # measurement window on the sender's clock (`at` values)
    end: float


# --- receiver processes -------------------------------------------------------------------


class _Receiver(WSListener):
    """Records (at, arrival) for every `state` message; answers nothing."""

    def __init__(self, sink: array, joined: asyncio.Future[str] | None):
        self.sink = sink
        self.joined = joined

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.time()
        msgs = _decode(frame.get_payload_as_bytes())
        for m in msgs if isinstance(msgs, list) else (msgs,):
            if m.type == "state":
                self.sink.append(m.at)
                self.sink.append(now)
            elif m.type == "joined" and self.joined is not None and not self.joined.done():
                self.joined.set_result(m.session)


async def _receivers(url: str, session: str, count: int, pipe: Connection) -> None:
    sink = array("d")
    transports = []
    for i in range(count):
        joined: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        listener = _Receiver(sink, joined)
        transport, _ = await picows.ws_connect(lambda lst=listener: lst, url)
        transport.send(
            WSMsgType.TEXT,
            msgspec.json.encode(
                {"type": "join", "session": session, "name": f"r{i}", "role": "observer", "rid": 1}
            ),
        )
        await asyncio.wait_for(joined, 30)
        transports.append(transport)
    await report(sink, transports, pipe)


async def report(sink: array, transports: list[WSTransport], pipe: Connection) -> None:
    """A receiver process, all joined: say so, take the phases, wait them out, then send back
    each phase's latencies (arrival - `at`, from the (at, arrival) pairs in `sink`)."""
    pipe.send("ready")
    phases: list[Phase] = pipe.recv()
    await asyncio.sleep(max(0.0, phases[-1].end + DRAIN_S - time.time()))
    for t in transports:
        t.disconnect()
    samples = np.frombuffer(sink, dtype=np.float64).reshape(-1, 2)
    out = []
    for ph in phases:
        sel = samples[(samples[:, 0] >= ph.start) & (samples[:, 0] < ph.end)]
        out.append((sel[:, 1] - sel[:, 0]).astype(np.float32))
    pipe.send(out)


def _receiver_main(url: str, session: str, count: int, pipe: Connection) -> None:
    import uvloop

    uvloop.run(_receivers(url, session, count, pipe))


# --- leader -------------------------------------------------------------------------------


class _Leader(WSListener):
    def __init__(self) -> None:
        self.session: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.session.done() or frame.msg_type is not WSMsgType.TEXT:
            return
        msgs = _decode(frame.get_payload_as_bytes())
        for m in msgs if isinstance(msgs, list) else (msgs,):
            if m.type == "joined":
                self.session.set_result(m.session)


async def pace(phase: Phase, send: Callable[[float, int], None]) -> int:
    """Call `send(at, k)` at `phase.rate` by absolute deadlines (so a late wake-up does not slow
    the rate) from the warm-up to the window's end; returns how many fell in the window."""
    period = 1.0 / phase.rate
    k, sent = 0, 0
    start = phase.start - WARMUP_S
    while True:
        deadline = start + k * period
        if deadline >= phase.end:
            return sent
        delay = deadline - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        at = time.time()
        send(at, k)
        if at >= phase.start:
            sent += 1
        k += 1


async def _send_phase(transport: WSTransport, session: str, phase: Phase) -> int:
    """The leader's `state_set`s for one phase; returns messages in window."""
    prefix = b'{"type":"state_set","session":"' + session.encode() + b'","at":'

    def send(at: float, k: int) -> None:
        transport.send(WSMsgType.TEXT, prefix + b'%.6f,"set":{"geometry.phase":%d}}' % (at, k))

    return await pace(phase, send)


# --- orchestration ------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
        return kb / 1024


def machine_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine, all cores, from /proc/stat: the receivers share
    the server's cores, so how busy the machine was says whether a result is the server's limit
    or the machine's."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all cores' time spent busy between two `machine_jiffies()` readings."""
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total else 0.0


def input_queue_drops() -> int:
    """Packets the kernel dropped because a core's input queue (net.core.netdev_max_backlog)
    was full, summed over cores (/proc/net/softnet_stat, second column): on loopback every
    packet passes through it, so a burst it cannot hold is lost SYNs and retransmitted data."""
    try:
        with open("/proc/net/softnet_stat") as f:
            return sum(int(line.split()[1], 16) for line in f if line.strip())
    except (OSError, IndexError, ValueError):
        return -1


def start_server(*extra: str) -> Server:
    """`collective-sync serve` on a free port, in memory, with rate limits out of the way;
    `extra` arguments are passed on."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collective_sync",
            "serve",
            "--port",
            "0",
            "--memory",
            "--rate",
            "100000",
            "--burst",
            "100000",
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r":(\d+) \(WebSocket", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return Server(proc, int(match.group(1)))


Job = Callable[[int, Connection], tuple[Any, tuple[Any, ...]]]  # (clients, pipe) -> (target, args)


async def spawn(workers: list[BaseProcess], clients: int, procs: int, job: Job) -> list[Connection]:
    """Start `procs` receiver processes sharing `clients` (`job(n, pipe)` gives each one's target
    and arguments), added to `workers`; return their pipes once every one has said "ready"."""
    ctx = mp.get_context("spawn")
    pipes: list[Connection] = []
    for i in range(procs):
        parent, child = ctx.Pipe()
        target, args = job(clients // procs + (1 if i < clients % procs else 0), child)
        w = ctx.Process(target=target, args=args, daemon=True)
        w.start()
        workers.append(w)
        pipes.append(parent)
    for p in pipes:
        if not await asyncio.to_thread(p.poll, 120):
            raise RuntimeError("receivers did not join in time")
        p.recv()
    return pipes


def plan(pipes: list[Connection], rates: list[float], duration: float) -> list[Phase]:
    """One measurement window per rate, each after a warm-up, starting shortly; told to every
    receiver process."""
    t = time.time() + 0.5 + WARMUP_S
    phases = []
    for rate in rates:
        phases.append(Phase(rate, t, t + duration))
        t += duration + WARMUP_S + 0.5
    for p in pipes:
        p.send(phases)
    return phases


def stop(server: Server, workers: list[BaseProcess]) -> None:
    """End the receiver processes (they end themselves after the phases) and the server."""
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.kill()
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@dataclass
class Result:
    rate_hz: float
    sent: int
    expected: int
    deliveries: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_cpu_percent: float = 0.0
    machine_cpu_percent: float = 0.0


async def sweep(
    server: Server,
    pipes: list[Connection],
    clients: int,
    rates: list[float],
    duration: float,
    send: Callable[[Phase], Awaitable[int]],
) -> tuple[list[dict[str, Any]], float]:
    """Plan the phases, run `send(phase)` for each (it returns the messages sent in the window)
    while timing the server's CPU, then gather the receivers' latencies: one result per rate,
    and the server's RSS (MB) after the last phase."""
    phases = plan(pipes, rates, duration)
    results = []
    for ph in phases:
        await asyncio.sleep(max(0.0, ph.start - WARMUP_S - time.time()))
        cpu0, t0, m0 = server.cpu_seconds(), time.time(), machine_jiffies()
        sent = await send(ph)
        cpu1, t1, m1 = server.cpu_seconds(), time.time(), machine_jiffies()
        server_cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        results.append(
            Result(
                ph.rate,
                sent,
                sent * clients,
                0,
                server_cpu_percent=server_cpu,
                machine_cpu_percent=busy_percent(m0, m1),
            )
        )
    rss = server.rss_mb()
    per_proc = [await asyncio.to_thread(p.recv) for p in pipes]

    out = []
    for i, (res, ph) in enumerate(zip(results, phases, strict=True)):
        lat = np.concatenate([pp[i] for pp in per_proc]) * 1000.0
        res.deliveries = int(lat.size)
        if lat.size:
            p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
            res.latency_ms = {
                "p50": round(float(p50), 2),
                "p99": round(float(p99), 2),
                "p999": round(float(p999), 2),
                "max": round(float(lat.max()), 2),
            }
        out.append(
            {
                "rate_hz": ph.rate,
                "sent": res.sent,
                "expected_deliveries": res.expected,
                "deliveries": res.deliveries,
                "delivery_ratio": round(res.deliveries / res.expected, 5) if res.expected else 0.0,
                "deliveries_per_s": round(res.deliveries / duration),
                "latency_ms": res.latency_ms,
                "server_cpu_percent": round(res.server_cpu_percent, 1),
                "machine_cpu_percent": round(res.machine_cpu_percent, 1),
            }
        )
    return out, rss


async def run(
    clients: int, procs: int, rates: list[float], duration: float, server_args: Sequence[str] = ()
) -> dict[str, Any]:
    server = start_server(*server_args)
    workers: list[BaseProcess] = []
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        leader = _Leader()
        transport, _ = await picows.ws_connect(lambda: leader, url)
        transport.send(WSMsgType.TEXT, b'{"type":"create","name":"leader","rid":1}')
        session = await asyncio.wait_for(leader.session, 10)

        pipes = await spawn(
            workers, clients, procs, lambda n, child: (_receiver_main, (url, session, n, child))
        )
        out, rss = await sweep(
            server, pipes, clients, rates, duration, lambda ph: _send_phase(transport, session, ph)
        )
        transport.disconnect()
    finally:
        stop(server, workers)
    return {
        "benchmark": "fanout",
        "clients": clients,
        "receiver_processes": procs,
        "duration_s": duration,
        "server_rss_mb": round(rss, 1),
        "machine": machine(),
        "results": out,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from collective_sync.server.hostlimits import read_limits

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "net_core": read_limits(),
    }


def table(report: dict[str, Any]) -> str:
    rows = [
        "| rate (Hz) | deliveries/s | delivered | p50 ms | p99 ms | p99.9 ms | max ms | server CPU "
        "| machine busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        rows.append(
            f"| {r['rate_hz']:g} | {r['deliveries_per_s']:,} | {100 * r['delivery_ratio']:.2f}% | "
            f"{lat.get('p50')} | {lat.get('p99')} | {lat.get('p999')} | {lat.get('max')} | "
            f"{r['server_cpu_percent']}% | {r.get('machine_cpu_percent', '—')}% |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="receiver processes")
    ap.add_argument("--rates", default="60", help="comma-separated update rates (Hz), run in sequence")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    ap.add_argument("--server-arg", action="append", help="passed on to `collective-sync serve`")
    ap.add_argument("--json", help="also write the JSON report to this file")
    args = ap.parse_args()
    import uvloop

    rates = [float(r) for r in args.rates.split(",")]
    report = uvloop.run(run(args.clients, args.procs, rates, args.duration, args.server_arg or []))
    emit(report, table(report), args.json)


def emit(report: dict[str, Any], summary: str, path: str | None) -> None:
    """The JSON report on stdout (and in `path`), the summary table on stderr."""
    text = json.dumps(report, indent=2)
    print(text)
    print(summary, file=sys.stderr)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
