"""SFU forwarding benchmark: one Opus publisher, N subscribers, the server on one core.

Why: the SFU forwards each publisher packet to every subscriber in one event-loop turn (header
rewrite, SRTP, one UDP send each), so that turn's length and its CPU bound how many listeners
one server core carries. The server (`collective-sync serve --memory`) runs pinned to core 0;
the publisher (aiortc encodes a tone: 20 ms Opus frames, 50 packets/s) and the subscribers run
pinned to core 1. Subscribers never decode: their receivers only count packets, so the client
core is not what limits N. N grows in steps on the same server (peers already connected stay);
after each step and a settling pause, a window of `--window` seconds is measured from /metrics
(forwarding-time histogram, packets in/out) and /proc (server CPU).

    python bench/sfu_forward.py --steps 10,25,50,100,150,200,300 --window 10 \
        --json bench/results/sfu_forward.json --plot docs/figures/sfu_forward.png

Loopback only: every process offers 127.0.0.1 as its only ICE candidate and no STUN server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import fanout
import msgspec

SERVER_CORE, CLIENT_CORE = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
SLOTS = ("voice", "engine")  # the offer's audio m-lines, in this order (docs/protocol.md)
P99_GOAL_S = 5e-3
SETTLE_S = 2.0
SHARED_NOTE = (
    "2-core machine shared with other people's work (tests, a headless browser) during the run: "
    "server pinned to core 0, publisher and subscribers to core 1; figures are noisy"
)


# --- processes and measurements shared with bench/state_channel.py ----------------------------


def pin(core: int) -> None:
    """Pin this process to one core, when the machine has more than one."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def schedstat(self) -> tuple[float, float]:
        """Seconds on a CPU and seconds runnable but waiting for one (other work on its core)."""
        with open(f"/proc/{self.proc.pid}/schedstat") as f:
            on_cpu, waiting, _ = f.read().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            return Metrics.parse(r.read().decode())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(*extra: str, nice: int = 0) -> Server:
    """The real server as a subprocess on SERVER_CORE (rate limits out of the way). `nice` < 0
    (root only) lets it hold its own against other people's work on a shared machine."""

    def setup() -> None:
        pin(SERVER_CORE)
        if nice:
            with contextlib.suppress(PermissionError):
                os.nice(nice)

    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
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
        preexec_fn=setup,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r":(\d+) \(WebSocket", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return Server(proc, int(match.group(1)))


def proc_cpu_seconds(pid: int | None = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


_LINE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{le="([^"]+)"\})?\s+(\S+)$')


@dataclass
class Metrics:
    """The few /metrics lines these benchmarks read (counters, gauges, the forward histogram)."""

    values: dict[str, float] = field(default_factory=dict)
    forward: list[tuple[float, float]] = field(default_factory=list)  # (le, cumulative count)

    @classmethod
    def parse(cls, text: str) -> Metrics:
        m = cls()
        for line in text.splitlines():
            hit = _LINE.match(line)
            if hit is None:
                continue
            name, le, value = hit.groups()
            if le is not None:
                if name == "collective_sync_sfu_forward_seconds_bucket":
                    m.forward.append((math.inf if le == "+Inf" else float(le), float(value)))
            else:
                m.values[name] = float(value)
        return m

    def get(self, short: str) -> float:
        return self.values.get("collective_sync_" + short, 0.0)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' estimate: linear inside the bucket holding the q-quantile (cumulative counts)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank:
            if math.isinf(le):
                return lower  # past the last bound: all we know is "above it"
            return lower + (le - lower) * (rank - below) / max(cum - below, 1e-12)
        lower, below = le, cum
    return lower


def cpu_pressure() -> float:
    """Seconds (total) during which some runnable task on this machine waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def pressure_avg10() -> float:
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split("avg10=", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0


async def quiet(threshold: float, wait: float) -> float:
    """Wait (at most `wait` s) until the machine's CPU pressure (share of the last 10 s in which
    something waited for a CPU) is under `threshold` %: others share this machine, and a window
    measured while they hog both cores says more about them than about the server."""
    end = time.monotonic() + wait
    p = pressure_avg10()
    while p > threshold and time.monotonic() < end:
        await asyncio.sleep(1.0)
        p = pressure_avg10()
    return p


def machine() -> dict[str, Any]:
    """fanout.machine(), and how loaded the shared machine was when this run started."""
    return {**fanout.machine(), "load_average_at_start": os.getloadavg(), "note": SHARED_NOTE}


# --- the publisher: the SDK, an aiortc-encoded tone --------------------------------------------


def make_tone(freq: float) -> Any:
    """A sine track, stereo, real time (copied from tests/rtcpeer.py: bench does not import tests)."""
    import av
    import numpy as np
    from aiortc import MediaStreamTrack

    rate = 48000

    class Tone(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self.t0 is None:
                self.t0 = time.monotonic()
            await asyncio.sleep(max(0.0, self.t0 + self.n / rate - time.monotonic()))
            t = (self.n + np.arange(960)) / rate
            x = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.repeat(x, 2).reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, self.n, fractions.Fraction(1, rate)
            self.n += 960
            return frame

    return Tone()


async def _publisher(url: str, pipe: Connection) -> None:
    from collective_sync.client import Client
    from collective_sync.client.rtc import RtcLink

    client = await Client.connect(url)
    session = await client.create("Publisher")
    link = await RtcLink.open(session)
    await link.publish("voice", make_tone(440.0))
    pipe.send(session.id)
    while True:
        cmd = await asyncio.to_thread(pipe.recv)
        if cmd == "unpublish":
            await link.unpublish("voice")
            pipe.send("ok")
        else:
            break
    await link.close()
    await client.close()


def _publisher_main(url: str, pipe: Connection) -> None:
    from collective_sync.ice import restrict_host_addresses

    pin(CLIENT_CORE)
    restrict_host_addresses(["127.0.0.1"])  # loopback only, never STUN
    asyncio.run(_publisher(url, pipe))


# --- subscribers: bare signalling over picows, aiortc peers that count instead of decoding ----


def _counting_receiver_class() -> type:
    from aiortc import RTCRtpReceiver
    from aiortc.rtp import RtpPacket

    class CountingReceiver(RTCRtpReceiver):
        """Counts forwarded packets and keeps the last arrival; no jitter buffer, no decoder."""

        count = 0
        last_arrival_ms = 0

        async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
            self.count += 1
            self.last_arrival_ms = arrival_time_ms

    return CountingReceiver


_decode_any = msgspec.json.Decoder().decode


class Signal:
    """One subscriber's WebSocket: join and offer as raw protocol messages, nothing else (an SDK
    client would add clock exchanges to the server's CPU)."""

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.transport: Any = None
        self.rid = 0
        self.states = 0  # `state` messages received (counted in the bytes: no decoding)

    def listener(self) -> Any:
        from picows import WSFrame, WSListener, WSMsgType, WSTransport

        signal = self

        class L(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type is not WSMsgType.TEXT:
                    return
                data = frame.get_payload_as_bytes()
                signal.states += data.count(b'"type":"state"')
                if not signal.pending:
                    return
                msgs = _decode_any(data)
                for m in msgs if isinstance(msgs, list) else [msgs]:
                    rid = m.get("rid") if isinstance(m, dict) else None
                    fut = signal.pending.pop(rid, None) if isinstance(rid, int) else None
                    if fut is not None and not fut.done():
                        fut.set_result(m)

        return L()

    async def request(self, msg: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        from picows import WSMsgType

        self.rid += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.rid] = fut
        self.transport.send(WSMsgType.TEXT, msgspec.json.encode({**msg, "rid": self.rid}))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.get("type") == "error":
            raise RuntimeError(f"{reply.get('code')}: {reply.get('message')}")
        return reply


@dataclass
class Sub:
    signal: Signal
    pc: Any
    receivers: list[Any]
    channel: Any
    dc_messages: list[int]  # one counter, shared with the channel's handler

    def received(self) -> int:
        return sum(r.count for r in self.receivers)


async def open_subscriber(url: str, session: str, name: str, timeout: float = 60.0) -> Sub:
    import picows
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    signal = Signal()
    signal.transport, _ = await picows.ws_connect(signal.listener, url, websocket_handshake_timeout=60)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await signal.request({"type": "join", "session": session, "name": name, "role": "observer"})
        counting = _counting_receiver_class()
        receivers = []
        for _ in SLOTS:
            t = pc.addTransceiver("audio", direction="sendrecv")
            t.receiver.__class__ = counting  # before the connection starts it: no decoding
            receivers.append(t.receiver)
        channel = pc.createDataChannel("state", ordered=False, maxRetransmits=0)
        dc_messages = [0]

        def on_message(_: Any) -> None:
            dc_messages[0] += 1

        channel.on("message", on_message)
        connected = asyncio.Event()
        pc.on("connectionstatechange", lambda: connected.set() if pc.connectionState == "connected" else None)
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "rtc_offer", "session": session, "sdp": pc.localDescription.sdp}
        answer = await signal.request(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await asyncio.wait_for(connected.wait(), timeout)
    except BaseException:
        await pc.close()
        signal.transport.disconnect()
        raise
    return Sub(signal, pc, receivers, channel, dc_messages)


async def subscribers(url: str, session: str, tag: int, batch: int, pipe: Connection) -> None:
    subs: list[Sub] = []
    failed = 0
    while True:
        cmd = await asyncio.to_thread(pipe.recv)
        if cmd[0] == "add":
            t0 = time.monotonic()
            want = cmd[1]
            while want > 0:
                k = min(batch, want)
                base = len(subs) + failed
                got = await asyncio.gather(
                    *(open_subscriber(url, session, f"s{tag}-{base + i}") for i in range(k)),
                    return_exceptions=True,
                )
                for g in got:
                    if isinstance(g, Sub):
                        subs.append(g)
                    else:
                        failed += 1
                        print(f"subscriber failed: {g!r}", file=sys.stderr)
                want -= k
            pipe.send(("added", len(subs), failed, time.monotonic() - t0))
        elif cmd[0] == "mark":
            up = sum(1 for s in subs if s.pc.connectionState == "connected")
            dc = sum(s.dc_messages[0] for s in subs)
            ws = sum(s.signal.states for s in subs)
            marks = [s.received() for s in subs]
            pipe.send(("mark", marks, up, proc_cpu_seconds(), dc, ws, time.monotonic()))
        else:
            break
    await asyncio.gather(*(s.pc.close() for s in subs), return_exceptions=True)
    for s in subs:
        s.signal.transport.disconnect()
    pipe.send("stopped")


def subscribers_main(url: str, session: str, tag: int, batch: int, pipe: Connection) -> None:
    import uvloop

    from collective_sync.ice import restrict_host_addresses

    pin(CLIENT_CORE)
    restrict_host_addresses(["127.0.0.1"])
    uvloop.run(subscribers(url, session, tag, batch, pipe))


# --- orchestration ---------------------------------------------------------------------------


async def ask(pipe: Connection, msg: Any, timeout: float = 600.0) -> Any:
    pipe.send(msg)
    if not await asyncio.to_thread(pipe.poll, timeout):
        raise RuntimeError(f"no answer to {msg!r} within {timeout} s")
    return pipe.recv()


async def run(
    steps: list[int],
    procs: int,
    window: float,
    batch: int,
    stop_p50: float,
    quiet_below: float,
    quiet_wait: float,
    nice: int,
) -> dict[str, Any]:
    server = start_server("--rtc-max-peers", str(max(steps) + 10), nice=nice)
    ctx = mp.get_context("spawn")
    children: list[mp.process.BaseProcess] = []
    results: list[dict[str, Any]] = []
    idle: dict[str, Any] = {}
    try:
        pub_pipe, child = ctx.Pipe()
        pub = ctx.Process(target=_publisher_main, args=(server.url, child), daemon=True)
        pub.start()
        children.append(pub)
        if not await asyncio.to_thread(pub_pipe.poll, 120):
            raise RuntimeError("the publisher did not start")
        session: str = pub_pipe.recv()
        pipes = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            args = (server.url, session, i, batch, child)
            w = ctx.Process(target=subscribers_main, args=args, daemon=True)
            w.start()
            children.append(w)
            pipes.append(parent)

        have = 0
        for n in steps:
            add = n - have
            per = [add // procs + (1 if i < add % procs else 0) for i in range(procs)]
            t0 = time.monotonic()
            added = await asyncio.gather(*(ask(p, ("add", k)) for p, k in zip(pipes, per, strict=True)))
            connect_s = time.monotonic() - t0
            have = n
            ok, failed = sum(a[1] for a in added), sum(a[2] for a in added)
            print(f"N={n}: {ok} connected, {failed} failed, {connect_s:.1f} s", file=sys.stderr)
            await asyncio.sleep(SETTLE_S)
            await quiet(quiet_below, quiet_wait)
            row = await measure(server, pipes, window)
            row.update(n=n, connected=ok, failed=failed, connect_seconds=round(connect_s, 1))
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
            # p50, not p99: on a shared machine p99 is other people's work as often as ours.
            if failed > 0.05 * n or (row["forward_p50_ms"] or 0) > stop_p50 * 1e3:
                break

        # All peers still connected, nothing published: what the peers cost when no packet flows
        # (RTCP, ICE consent checks, WebSocket keepalives), to tell apart from forwarding.
        await ask(pub_pipe, "unpublish")
        await asyncio.sleep(SETTLE_S)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(5.0)
        frac = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        idle = {"n": have, "server_cpu_percent": round(100 * frac, 1)}
        pub_pipe.send("stop")
        for p in pipes:
            await ask(p, ("stop",), 120)
    finally:
        for c in children:
            c.join(timeout=10)
            if c.is_alive():
                c.kill()
        server.stop()
    ok_rows = [
        r
        for r in results
        if (r["forward_p99_ms"] or math.inf) <= P99_GOAL_S * 1e3
        and r["subscribers_at_95pct"] == r["connected"]
        and r["failed"] == 0
    ]
    return {
        "benchmark": "sfu_forward",
        "publisher": "aiortc Opus, 20 ms frames, 50 packets/s, slot voice",
        "window_s": window,
        "subscriber_processes": procs,
        "server_nice": nice,
        "max_n_with_p99_le_5ms": max((r["n"] for r in ok_rows), default=None),
        "idle_with_all_peers": idle,
        "machine": machine(),
        "results": results,
    }


async def measure(server: Server, pipes: list[Connection], window: float) -> dict[str, Any]:
    async def snapshot() -> tuple[Metrics, float, float, list[Any], tuple[float, float], float]:
        marks = await asyncio.gather(*(ask(p, ("mark",)) for p in pipes))
        m = await asyncio.to_thread(server.metrics)
        return m, server.cpu_seconds(), time.monotonic(), marks, server.schedstat(), cpu_pressure()

    m0, c0, t0, k0, s0, p0 = await snapshot()
    await asyncio.sleep(window)
    m1, c1, t1, k1, s1, p1 = await snapshot()
    dt = t1 - t0
    cpu = (c1 - c0) / dt  # fraction of one core
    pin_ = m1.get("sfu_packets_in_total") - m0.get("sfu_packets_in_total")
    pout = m1.get("sfu_packets_out_total") - m0.get("sfu_packets_out_total")
    buckets = [(le, b - a) for (le, b), (_, a) in zip(m1.forward, m0.forward, strict=True)]
    count = buckets[-1][1] if buckets else 0.0
    fsum = m1.get("sfu_forward_seconds_sum") - m0.get("sfu_forward_seconds_sum")
    at_5ms = next((cum for le, cum in buckets if le == P99_GOAL_S), 0.0)
    ratios = []
    client_cpu = 0.0
    rate_in = pin_ / dt  # the publisher's packets per second, as the server got them
    for a, b in zip(k0, k1, strict=True):
        # Against each process's own window: its marks may lag the server's reading.
        expected = rate_in * (b[6] - a[6])
        ratios += [(y - x) / expected if expected else 0.0 for x, y in zip(a[1], b[1], strict=False)]
        client_cpu += b[3] - a[3]
    n = sum(b[2] for b in k1)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1e3, 3)

    return {
        "window_s": round(dt, 2),
        "packets_in": int(pin_),
        "packets_out": int(pout),
        "expected_out": int(pin_ * n),
        "forward_p50_ms": ms(histogram_quantile(0.5, buckets)),
        "forward_p99_ms": ms(histogram_quantile(0.99, buckets)),
        "forward_mean_ms": ms(fsum / count) if count else None,
        "forward_share_le_5ms": round(at_5ms / count, 5) if count else None,
        "forward_histogram": [["+Inf" if math.isinf(le) else le, int(c)] for le, c in buckets],
        "server_recent_p50_ms": ms(m1.get("sfu_forward_p50_seconds")),
        "server_recent_p99_ms": ms(m1.get("sfu_forward_p99_seconds")),
        "server_cpu_percent": round(100 * cpu, 1),
        "server_waiting_for_cpu_percent": round(100 * (s1[1] - s0[1]) / dt, 1),
        "machine_cpu_pressure_percent": round(100 * (p1 - p0) / dt, 1),
        "cpu_us_per_forwarded_packet": round(1e6 * (c1 - c0) / pout, 1) if pout else None,
        "core_percent_per_subscriber": round(100 * cpu / n, 3) if n else None,
        "client_cpu_percent": round(100 * client_cpu / dt, 1),
        "subscribers_up": n,
        "subscribers_at_95pct": sum(1 for r in ratios if r >= 0.95),
        "received_ratio_min": round(min(ratios), 4) if ratios else None,
        "received_ratio_median": round(sorted(ratios)[len(ratios) // 2], 4) if ratios else None,
    }


def table(report: dict[str, Any]) -> str:
    rows = [
        "| N | forward p50 ms | p99 ms | mean ms | ≤ 5 ms | server CPU | µs CPU / packet | "
        "% core / subscriber | received ≥ 95 % | min received |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        rows.append(
            f"| {r['n']} | {r['forward_p50_ms']} | {r['forward_p99_ms']} | {r['forward_mean_ms']} | "
            f"{100 * (r['forward_share_le_5ms'] or 0):.2f}% | {r['server_cpu_percent']}% | "
            f"{r['cpu_us_per_forwarded_packet']} | {r['core_percent_per_subscriber']} | "
            f"{r['subscribers_at_95pct']}/{r['connected']} | {100 * (r['received_ratio_min'] or 0):.1f}% |"
        )
    return "\n".join(rows)


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    n = [r["n"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(n, [r["forward_p50_ms"] for r in rows], "o-", label="p50")
    a.plot(n, [r["forward_p99_ms"] for r in rows], "s-", label="p99")
    a.plot(n, [r["forward_mean_ms"] for r in rows], "^--", label="mean", alpha=0.6)
    a.axhline(P99_GOAL_S * 1e3, color="grey", ls=":", label="5 ms goal")
    a.set_yscale("log")
    for r in rows:  # how long the server waited for its (shared) core during the window
        a.annotate(
            f"wait {r['server_waiting_for_cpu_percent']:g}%",
            (r["n"], r["forward_p50_ms"] or 0.01),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=7,
            color="grey",
        )
    a.set_xlabel("subscribers N")
    a.set_ylabel("receive → last subscriber's send (ms)")
    a.set_title("SFU forwarding time, 1 publisher, 50 packets/s")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(n, [r["cpu_us_per_forwarded_packet"] for r in rows], "o-", color="C2", label="µs CPU / packet")
    b.set_xlabel("subscribers N")
    b.set_ylabel("server CPU µs per forwarded packet", color="C2")
    b2 = b.twinx()
    b2.plot(n, [r["server_cpu_percent"] for r in rows], "s--", color="C3", label="server CPU %")
    b2.set_ylabel("server CPU (% of one core)", color="C3")
    b.set_title("Server CPU (pinned to one core)")
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="10,25,50,100,150,200,300", help="subscriber counts, ascending")
    ap.add_argument("--procs", type=int, default=2, help="subscriber processes (all on the client core)")
    ap.add_argument("--window", type=float, default=10.0, help="measured seconds per step")
    ap.add_argument("--batch", type=int, default=10, help="peers opened concurrently per process")
    ap.add_argument("--stop-p50", type=float, default=0.005, help="stop once forward p50 is above (s)")
    ap.add_argument("--quiet-below", type=float, default=40.0, help="CPU pressure %% to wait for")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="... for at most this long (s)")
    ap.add_argument("--server-nice", type=int, default=0, help="server's nice value (< 0: root only)")
    ap.add_argument("--json", help="also write the JSON report to this file")
    ap.add_argument("--plot", help="write the figure to this PNG")
    args = ap.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    t0 = time.monotonic()
    report = asyncio.run(
        run(
            steps,
            args.procs,
            args.window,
            args.batch,
            args.stop_p50,
            args.quiet_below,
            args.quiet_wait,
            args.server_nice,
        )
    )
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    text = json.dumps(report, indent=2)
    print(text)
    print(table(report), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
