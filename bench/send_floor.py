"""The floor under any fan-out on this machine: one `send` per receiver, nothing else.

A sender process writes one ~110-byte WebSocket-sized frame to each of N loopback TCP sockets,
`--rate` times a second, from a plain loop (no event loop, no framing, no bookkeeping); receiver
processes drain their sockets with epoll, as a real client would. Reported per fan-out: wall time
and the sender's CPU time. No server can deliver one update to N sockets faster than this from one
thread, so it bounds what the latency goals of a large session can be on this machine:

    python bench/send_floor.py --clients 10000 --procs 4 --rate 10 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import select
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from fanout import busy_percent, emit, machine, machine_jiffies

FRAME = b"\x81\x6e" + b"x" * 110  # an unmasked server text frame of 110 bytes


def _drain(port: int, count: int, seconds: float, pipe: Connection) -> None:
    """Connect `count` sockets, then read whatever arrives for `seconds`; send back the bytes."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    poll = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poll.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
    pipe.send("ready")
    got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for fd, _ in poll.poll(0.2):
            with contextlib.suppress(BlockingIOError):
                got += len(by_fd[fd].recv(65536))
    pipe.send(got)


def run(clients: int, procs: int, rate: float, seconds: float) -> dict[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    ctx = mp.get_context("spawn")
    pipes, workers = [], []
    for i in range(procs):
        parent, child = ctx.Pipe()
        share = clients // procs + (1 if i < clients % procs else 0)
        w = ctx.Process(target=_drain, args=(port, share, seconds + 30.0, child), daemon=True)
        w.start()
        workers.append(w)
        pipes.append(parent)
    conns: list[socket.socket] = []
    while len(conns) < clients:
        c, _ = listener.accept()
        c.setblocking(False)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(c)
    for p in pipes:
        p.recv()
    walls, cpus, full = [], [], 0
    m0 = machine_jiffies()
    deadline = time.monotonic()
    for _ in range(int(seconds * rate)):
        deadline += 1.0 / rate
        w0, c0 = time.perf_counter(), time.thread_time()
        for c in conns:
            try:
                c.send(FRAME)
            except BlockingIOError:
                full += 1  # a receiver this far behind would be coalesced by the real server
        walls.append(time.perf_counter() - w0)
        cpus.append(time.thread_time() - c0)
        time.sleep(max(0.0, deadline - time.monotonic()))
    busy = busy_percent(m0, machine_jiffies())
    for c in conns:
        c.close()
    for w in workers:
        w.join(timeout=40)
    wall = np.array(walls) * 1000.0
    cpu = np.array(cpus) * 1000.0
    return {
        "benchmark": "send_floor",
        "clients": clients,
        "receiver_processes": procs,
        "rate_hz": rate,
        "fanouts": len(walls),
        "fanout_wall_ms": {
            "p50": round(float(np.percentile(wall, 50)), 2),
            "p99": round(float(np.percentile(wall, 99)), 2),
            "max": round(float(wall.max()), 2),
        },
        "fanout_cpu_ms_p50": round(float(np.percentile(cpu, 50)), 2),
        "us_per_send_wall_p50": round(float(np.percentile(wall, 50)) * 1000.0 / clients, 2),
        "sends_refused_full": full,
        "machine_cpu_percent": round(busy, 1),
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=4, help="receiver processes")
    ap.add_argument("--rate", type=float, default=10.0, help="fan-outs per second")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", help="also write the JSON report to this file")
    args = ap.parse_args()
    r = run(args.clients, args.procs, args.rate, args.seconds)
    w = r["fanout_wall_ms"]
    summary = (
        f"{r['clients']:,} sockets at {r['rate_hz']:g}/s: one fan-out takes p50 {w['p50']} ms "
        f"(p99 {w['p99']}, {r['us_per_send_wall_p50']} us per send; sender CPU p50 "
        f"{r['fanout_cpu_ms_p50']} ms), machine busy {r['machine_cpu_percent']}%"
    )
    emit(r, summary, args.json)


if __name__ == "__main__":
    main()
