"""bench/fanout.py's scenario run against peer servers too, with the same receiving clients, so
the ratios can be reproduced: Collective Sync, Node socket.io 4.8 (a room broadcast) and
python-socketio (AsyncServer on aiohttp, under uvloop).

One room, one publisher, N receivers in K processes; the publisher sends updates stamped with
its send time `at` at each rate of the sweep (a receiver's frame: 112 bytes from Collective Sync,
106 from socket.io); receivers record arrival - `at`. A delivery counts when it arrives within
fanout's DRAIN_S after its window: a server that queues when overloaded shows as late, then lost.
Collective Sync runs exactly as bench/fanout.py runs it (its `run`). For the socket.io servers
(bench/peers/socketio_server.js, bench/peers/psio_server.py) the publisher and receivers are
bare picows clients speaking Engine.IO v4 / Socket.IO v5 over WebSocket, as cheap as fanout's.

    python bench/peers.py --servers collective,socketio,python-socketio --clients 1000 --procs 2 \\
        --rates 60,240,480,960 --duration 5 --json bench/results/peers.json --plot docs/figures/peers.png

Needs: node and npm (the first socket.io run does `npm ci` in bench/peers, from its lock file,
when bench/peers/node_modules is missing) and the `bench` extra (python-socketio, matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from importlib.metadata import version
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import fanout
import msgspec
import picows
from fanout import Phase, Server, machine, pace, report, spawn, stop, sweep
from picows import WSFrame, WSListener, WSMsgType, WSTransport

PEERS = Path(__file__).resolve().parent / "peers"
ROOM = b"room0001"
SERVERS = ("collective", "socketio", "python-socketio")
LABELS = {
    "collective": "Collective Sync {}",
    "socketio": "socket.io {} (Node)",
    "python-socketio": "python-socketio {} (aiohttp)",
}


class _At(msgspec.Struct):
    at: float


_decode_event = msgspec.json.Decoder(tuple[str, _At]).decode


# --- socket.io clients --------------------------------------------------------------------


class _SioClient(WSListener):
    """A bare Engine.IO v4 / Socket.IO v5 client, one packet per frame: `0{..}` (open) is
    answered with `40` (connect to "/"); `40{..}` (connected) with `421["join",room]` (join,
    ack id 1); `431[]` (the ack) means it is in the room; every ping `2` gets its pong `3`, or
    the server drops it. Records (at, arrival) of every `42["state",{.."at":..}]`."""

    def __init__(self, sink: array, room: bytes | None):
        self.sink, self.room = sink, room
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.time()
        data = frame.get_payload_as_bytes()
        if data[:2] == b"42":
            self.sink.extend((_decode_event(data[2:])[1].at, now))
        elif data == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif data[:1] == b"0":
            transport.send(WSMsgType.TEXT, b"40")
        elif data[:2] == b"40" and self.room is not None:
            transport.send(WSMsgType.TEXT, b'421["join","' + self.room + b'"]')
        elif data[:2] in (b"40", b"43") and not self.ready.done():
            self.ready.set_result(None)
        elif data[:2] == b"44" and not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connect refused: {data!r}"))


async def _sio_connect(port: int, sink: array, room: bytes | None) -> WSTransport:
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    client = _SioClient(sink, room)
    transport, _ = await picows.ws_connect(lambda: client, url)
    await asyncio.wait_for(client.ready, 30)
    return transport


async def _sio_receivers(port: int, count: int, pipe: Connection) -> None:
    sink = array("d")
    transports = [await _sio_connect(port, sink, ROOM) for _ in range(count)]
    await report(sink, transports, pipe)


def _sio_receiver_main(port: int, count: int, pipe: Connection) -> None:
    import uvloop

    uvloop.run(_sio_receivers(port, count, pipe))


def _sio_sender(transport: WSTransport) -> Callable[[Phase], Any]:
    """The publisher's `update` event for each tick, the size and shape of fanout's state."""
    prefix = b'42["update",{"room":"' + ROOM + b'","at":'

    def send(at: float, k: int) -> None:
        tail = b'%.6f,"v":%d,"from":"publisher","set":{"geometry.phase":%d}}]' % (at, k, k)
        transport.send(WSMsgType.TEXT, prefix + tail)

    return lambda ph: pace(ph, send)


# --- servers ------------------------------------------------------------------------------


def start_peer(kind: str) -> Server:
    """Start a socket.io peer server; it prints its port on its first line."""
    if kind == "socketio":
        if not (PEERS / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True, stdout=sys.stderr)
        cmd = ["node", str(PEERS / "socketio_server.js")]
    else:
        cmd = [sys.executable, str(PEERS / "psio_server.py")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return Server(proc, int(line))


def versions(kind: str) -> dict[str, str]:
    if kind == "collective":
        return {"collective-sync": version("collective-sync")}
    if kind == "socketio":
        pkg = json.loads((PEERS / "node_modules" / "socket.io" / "package.json").read_text())
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        return {"socket.io": pkg["version"], "node": node}
    return {p: version(p) for p in ("python-socketio", "python-engineio", "aiohttp", "uvloop")}


async def run_peer(
    kind: str, clients: int, procs: int, rates: list[float], duration: float
) -> dict[str, Any]:
    server = start_peer(kind)
    workers: list[BaseProcess] = []
    try:
        publisher = await _sio_connect(server.port, array("d"), None)

        def job(n: int, pipe: Connection) -> tuple[Any, tuple[Any, ...]]:
            return _sio_receiver_main, (server.port, n, pipe)

        pipes = await spawn(workers, clients, procs, job)
        results, rss = await sweep(server, pipes, clients, rates, duration, _sio_sender(publisher))
        publisher.disconnect()
    finally:
        stop(server, workers)
    return {"server_rss_mb": round(rss, 1), "results": results}


async def run(kind: str, clients: int, procs: int, rates: list[float], duration: float) -> dict[str, Any]:
    if kind == "collective":
        res = await fanout.run(clients, procs, rates, duration)
        res = {"server_rss_mb": res["server_rss_mb"], "results": res["results"]}
    else:
        res = await run_peer(kind, clients, procs, rates, duration)
    return {"server": kind, "versions": versions(kind), **res}


# --- output -------------------------------------------------------------------------------


def table(out: dict[str, Any]) -> str:
    rows = [
        "| server | rate (Hz) | deliveries/s | delivered | p50 ms | p99 ms | p99.9 ms | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for block in out["servers"]:
        for r in block["results"]:
            lat = r["latency_ms"]
            rows.append(
                f"| {block['server']} | {r['rate_hz']:g} | {r['deliveries_per_s']:,} | "
                f"{100 * r['delivery_ratio']:.2f}% | {lat.get('p50')} | {lat.get('p99')} | "
                f"{lat.get('p999')} | {r['server_cpu_percent']}% |"
            )
    return "\n".join(rows)


def plot(out: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for block in out["servers"]:
        rows = [r for r in block["results"] if r["latency_ms"]]
        x = [r["deliveries_per_s"] for r in rows]
        label = LABELS[block["server"]].format(next(iter(block["versions"].values())))
        ax.plot(x, [r["latency_ms"]["p99"] for r in rows], "o-", label=label)
        for r, xi in zip(rows, x, strict=True):
            ax.annotate(f"{r['rate_hz']:g} Hz", (xi, r["latency_ms"]["p99"]), fontsize=7, alpha=0.7)
    ax.axhline(50, ls="--", color="grey", lw=1, label="50 ms")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries/s achieved")
    ax.set_ylabel("p99 latency (ms)")
    m = out["machine"]
    ax.set_title(
        f"{out['clients']} receivers in one room, rate sweep; {m['cores']} cores shared by all", fontsize=11
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="receiver processes")
    ap.add_argument("--rates", default="60,240,480,960", help="comma-separated update rates (Hz)")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per rate")
    ap.add_argument("--json", help="also write the JSON report to this file")
    ap.add_argument("--plot", help="write the p99-vs-throughput figure (PNG) to this file")
    args = ap.parse_args()
    kinds = args.servers.split(",")
    if unknown := set(kinds) - set(SERVERS):
        ap.error(f"unknown servers: {', '.join(sorted(unknown))}")
    import uvloop

    rates = [float(r) for r in args.rates.split(",")]
    out: dict[str, Any] = {
        "benchmark": "peers",
        "clients": args.clients,
        "receiver_processes": args.procs,
        "duration_s": args.duration,
        "machine": machine(),
        "servers": [],
    }
    for kind in kinds:
        out["servers"].append(uvloop.run(run(kind, args.clients, args.procs, rates, args.duration)))
        time.sleep(1.0)  # let the last server's sockets close before the next one starts
    text = json.dumps(out, indent=2)
    print(text)
    print(table(out), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.plot:
        plot(out, args.plot)


if __name__ == "__main__":
    main()
