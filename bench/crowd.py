"""A ceremony of thousands in one session: join storm, admission, quiet, fan-out at 10 and 60 Hz.

One server process (`collective-sync serve`), one leader sending `state_set`, and N bare
receivers in K worker processes (the same picows receivers as bench/fanout.py):

1. **Members**: M receivers join first (say 1,000: a ceremony already running).
2. **Join storm**: the leader sends at `--storm-rate` while the other N - M receivers connect
   and join all at once (at most `--in-flight` handshakes per process). Reported: the time until
   the last joiner has its `joined`, join latencies, and the members' update latency during the
   storm next to their latency before it (admission: joins must not starve members).
3. **Quiet** for `--quiet` s (longer than the keepalive's 15 s idle + 10 s reply): nobody may be
   dropped by keepalive or presence.
4. **Fan-out** phases at each `--rates` for everyone: delivery ratio, latency, server CPU
   and how busy the whole machine was (its cores are shared with the receivers); at the
   end each receiver's last value is compared with the leader's last (convergence: a receiver
   that fell behind gets coalesced state, but must end on the final value).

    python bench/crowd.py --clients 10000 --members 1000 --procs 4 --rates 10,60 --json out.json

Server RSS is read from /proc after the storm and at the end. Closes seen by receivers are
counted with their close codes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import numpy as np
import picows
from fanout import (
    DRAIN_S,
    WARMUP_S,
    Phase,
    _Leader,
    busy_percent,
    emit,
    input_queue_drops,
    machine,
    machine_jiffies,
    pace,
    start_server,
)
from fanout import table as rate_table
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport


class _Msg(msgspec.Struct):
    type: str
    at: float = 0.0
    session: str = ""
    set: dict[str, Any] = {}


_decode = msgspec.json.Decoder(_Msg | list[_Msg]).decode
PATH = "geometry.phase"


@dataclass
class Plan:
    """What the orchestrator tells every worker: when the storm starts, the measured phases."""

    storm_at: float
    phases: list[Phase] = field(default_factory=list)


class _Receiver(WSListener):
    """Records (at, arrival) of each `state`, its last value, and how it was closed."""

    __slots__ = ("closes", "joined", "last", "sink")

    def __init__(self, sink: array, closes: Counter[str]):
        self.sink = sink
        self.closes = closes
        self.joined: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.last: int = -1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            self.closes[str(frame.get_close_code())] += 1
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.time()
        msgs = _decode(frame.get_payload_as_bytes())
        for m in msgs if isinstance(msgs, list) else (msgs,):
            if m.type == "state":
                self.sink.append(m.at)
                self.sink.append(now)
                value = m.set.get(PATH)
                if value is not None:
                    self.last = value
            elif m.type == "joined" and not self.joined.done():
                self.joined.set_result(now)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed before joined"))
        self.closes["disconnected"] += 1


class _Bulk(asyncio.Protocol):
    """A receiver as cheap as can be, so that 10,000 of them fit beside the server on 2 cores:
    a raw socket that does the upgrade itself, then walks the frames of each read, counting
    `state` messages and keeping the last value, and answers pings. Latency is measured by the
    picows receivers (members, and every `--probe-every`th joiner) spread among them."""

    UPGRADE = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    def __init__(self, join: bytes, closes: Counter[str]):
        self.join = join
        self.closes = closes
        self.joined: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.upgraded = False
        self.count = 0  # `state` messages received
        self.last = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.UPGRADE)  # type: ignore[union-attr]

    @staticmethod
    def frame(opcode: int, payload: bytes) -> bytes:
        """A client frame: masked, with the all-zero key (valid, and no XOR to do)."""
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        else:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        return head + b"\0\0\0\0" + payload

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            del buf[: end + 4]
            assert self.transport is not None
            self.transport.write(self.frame(1, self.join))
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])
            pos += head + n
            if opcode == 1:
                found = payload.count(b'"type":"state"')
                if found:
                    self.count += found
                    at = payload.rfind(b'"%s":' % PATH.encode())
                    if at >= 0:
                        digits = payload[at + len(PATH) + 3 :].split(b"}", 1)[0].split(b",", 1)[0]
                        self.last = int(digits)
                if not self.joined.done() and b'"type":"joined"' in payload:
                    self.joined.set_result(time.time())
            elif opcode == 9:  # ping
                assert self.transport is not None
                self.transport.write(self.frame(10, payload))
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.closes[str(code)] += 1
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed before joined"))
        self.closes["disconnected"] += 1


@dataclass
class Joined:
    probes: list[_Receiver] = field(default_factory=list)
    bulk: list[_Bulk] = field(default_factory=list)
    transports: list[WSTransport] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def close(self) -> None:
        for t in self.transports:
            t.send_close(WSCloseCode.GOING_AWAY)
            t.disconnect()
        for b in self.bulk:
            if b.transport is not None:
                b.transport.close()


async def _join_all(
    url: str,
    session: str,
    count: int,
    in_flight: int,
    sink: array,
    closes: Counter[str],
    tag: str,
    probe_every: int = 1,
) -> Joined:
    """Connect and join `count` receivers, at most `in_flight` at a time: every `probe_every`th
    a picows probe (latency), the others bulk receivers."""
    gate = asyncio.Semaphore(in_flight)
    out = Joined()
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        msg = msgspec.json.encode({"type": "join", "session": session, "name": f"{tag}{i}", "rid": 1})
        async with gate:
            t0 = time.time()
            if i % probe_every == 0:
                r = _Receiver(sink, closes)
                # As patient as a browser (which has no handshake timeout of its own): a joiner
                # waits its turn rather than giving up after picows' default of 5 s.
                transport, _ = await picows.ws_connect(lambda: r, url, websocket_handshake_timeout=120)
                transport.send(WSMsgType.TEXT, msg)
                out.latencies.append(await asyncio.wait_for(r.joined, 120) - t0)
                out.probes.append(r)
                out.transports.append(transport)
            else:
                b = _Bulk(msg, closes)
                await loop.create_connection(lambda: b, "127.0.0.1", port)
                out.latencies.append(await asyncio.wait_for(b.joined, 120) - t0)
                out.bulk.append(b)

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        closes[f"join_failed:{type(failed[0]).__name__}"] += len(failed)
    return out


async def _worker(
    url: str, session: str, members: int, joiners: int, in_flight: int, probe_every: int, pipe: Connection
) -> None:
    member_sink, crowd_sink = array("d"), array("d")
    closes: Counter[str] = Counter()
    mem = await _join_all(url, session, members, in_flight, member_sink, closes, "m")
    pipe.send("ready")
    plan: Plan = pipe.recv()
    await asyncio.sleep(max(0.0, plan.storm_at - time.time()))
    crowd = await _join_all(url, session, joiners, in_flight, crowd_sink, closes, "j", probe_every)
    pipe.send(("joined", time.time(), np.array(crowd.latencies, dtype=np.float32)))
    # The quiet before the steady phases is a clean boundary for the bulk receivers' counts.
    await asyncio.sleep(max(0.0, plan.phases[2].start - WARMUP_S - 0.2 - time.time()))
    counted = sum(b.count for b in crowd.bulk)
    await asyncio.sleep(max(0.0, plan.phases[-1].end + DRAIN_S - time.time()))
    bulk = (sum(b.count for b in crowd.bulk) - counted, len(crowd.bulk))
    lasts: list[int] = [r.last for r in (*mem.probes, *crowd.probes)] + [b.last for b in crowd.bulk]
    seen_closes = dict(closes)  # before our own closes
    mem.close()
    crowd.close()
    out = []
    member_samples = np.frombuffer(member_sink, dtype=np.float64).reshape(-1, 2)
    storm = plan.phases[1]
    during = member_samples[(member_samples[:, 0] >= storm.start) & (member_samples[:, 0] < storm.end)]
    for sink in (member_sink, crowd_sink):
        samples = np.frombuffer(sink, dtype=np.float64).reshape(-1, 2)
        per_phase = []
        for ph in plan.phases:
            sel = samples[(samples[:, 0] >= ph.start) & (samples[:, 0] < ph.end)]
            per_phase.append((sel[:, 1] - sel[:, 0]).astype(np.float32))
        out.append(per_phase)
    pipe.send((out, during, lasts, seen_closes, bulk))


def _worker_main(*args: Any) -> None:
    import uvloop

    uvloop.run(_worker(*args))


def _stats(lat_s: np.ndarray) -> dict[str, float]:
    if not lat_s.size:
        return {}
    ms = lat_s * 1000.0
    p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
    return {
        "p50": round(float(p50), 2),
        "p99": round(float(p99), 2),
        "p999": round(float(p999), 2),
        "max": round(float(ms.max()), 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--no-rtc", "--max-connections-per-ip", str(args.clients + 64), *(args.server_arg or [])]
    server = start_server(*extra)
    workers: list[BaseProcess] = []
    ctx = mp.get_context("spawn")
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        leader = _Leader()
        transport, _ = await picows.ws_connect(lambda: leader, url)
        transport.send(WSMsgType.TEXT, b'{"type":"create","name":"leader","rid":1}')
        session = await asyncio.wait_for(leader.session, 10)
        prefix = b'{"type":"state_set","session":"' + session.encode() + b'","at":'
        last_k = -1
        sent_at = array("d")

        def send(at: float, k: int) -> None:
            nonlocal last_k
            transport.send(WSMsgType.TEXT, prefix + b'%.6f,"set":{"%s":%d}}' % (at, PATH.encode(), k))
            last_k = k
            sent_at.append(at)

        pipes: list[Connection] = []
        # Members and joiners live in different processes, so that what members measure during
        # the storm is the server's doing, not their own process being busy with handshakes.
        crowd, procs = args.clients - args.members, args.procs
        shares = [(args.members // procs + (i < args.members % procs), 0) for i in range(procs)]
        shares += [(0, crowd // procs + (i < crowd % procs)) for i in range(procs)]
        for members, joiners in shares:
            parent, child = ctx.Pipe()
            worker = ctx.Process(
                target=_worker_main,
                args=(url, session, members, joiners, args.in_flight, args.probe_every, child),
                daemon=True,
            )
            worker.start()
            workers.append(worker)
            pipes.append(parent)
        for p in pipes:
            if not await asyncio.to_thread(p.poll, 300):
                raise RuntimeError("members did not join in time")
            p.recv()
        rss_members = server.rss_mb()

        # Before the storm (baseline), the storm, the quiet, then one phase per rate.
        t = time.time() + 0.5 + WARMUP_S
        base = Phase(args.storm_rate, t, t + args.baseline)
        storm_at = base.end + 0.2
        plan = Plan(storm_at)
        # The storm phase's end is set generously; members' samples are cut at the storm's real end.
        storm = Phase(args.storm_rate, storm_at, storm_at + args.storm_max)
        t = storm.end + args.quiet
        rates = [float(r) for r in args.rates.split(",")]
        steady = []
        for rate in rates:
            steady.append(Phase(rate, t, t + args.duration))
            t += args.duration + WARMUP_S + 0.5
        plan.phases = [base, storm, *steady]
        for p in pipes:
            p.send(plan)

        cpu0, m0, drops0 = server.cpu_seconds(), machine_jiffies(), input_queue_drops()
        # One steady stream from the baseline through the storm (phases only cut it for measuring).
        sender = asyncio.create_task(pace(Phase(args.storm_rate, base.start, storm.end), send))
        joined_at = []
        join_lat = []
        for p in pipes:
            _, at, latencies = await asyncio.to_thread(p.recv)
            joined_at.append(at)
            join_lat.append(latencies)
        storm_s = max(joined_at) - storm_at
        rss_storm = server.rss_mb()
        cpu_storm = server.cpu_seconds() - cpu0
        busy_storm = busy_percent(m0, machine_jiffies())
        drops_storm = input_queue_drops() - drops0
        await sender
        results = []
        for ph in steady:
            c0, t0, m0, d0 = server.cpu_seconds(), time.time(), machine_jiffies(), input_queue_drops()
            sent = await pace(ph, send)
            cpu = 100 * (server.cpu_seconds() - c0) / (time.time() - t0)
            results.append((sent, cpu, busy_percent(m0, machine_jiffies()), input_queue_drops() - d0))
        final_k = last_k
        rss_end = server.rss_mb()
        per_worker = [await asyncio.to_thread(p.recv) for p in pipes]
        transport.disconnect()
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
        server.proc.terminate()
        server.proc.wait(timeout=10)

    closes: Counter[str] = Counter()
    lasts: list[int] = []
    bulk_count = bulk_n = 0
    for _, _, worker_lasts, worker_closes, (count, n) in per_worker:
        closes.update(worker_closes)
        lasts.extend(worker_lasts)
        bulk_count, bulk_n = bulk_count + count, bulk_n + n
    probes = args.clients - bulk_n
    sends = np.frombuffer(sent_at, dtype=np.float64)
    steady_sent = int((sends >= steady[0].start - WARMUP_S - 0.1).sum())
    storm_sent = int(((sends >= storm_at) & (sends < storm_at + storm_s)).sum())
    joins = np.concatenate(join_lat)

    def lat(group: int, phase: int) -> np.ndarray:
        return np.concatenate([w[0][group][phase] for w in per_worker])

    members_base = lat(0, 0)
    during = np.concatenate([w[1] for w in per_worker])
    during = during[during[:, 0] < storm_at + storm_s]
    members_storm = (during[:, 1] - during[:, 0]).astype(np.float32)
    steady_out = []
    for i, (ph, (sent, cpu, busy, drops)) in enumerate(zip(steady, results, strict=True)):
        all_lat = np.concatenate([lat(0, 2 + i), lat(1, 2 + i)])
        expected = sent * probes
        steady_out.append(
            {
                "rate_hz": ph.rate,
                "sent": sent,
                "deliveries_per_s": round(sent * args.clients / args.duration),
                "probes": probes,
                "probe_deliveries": int(all_lat.size),
                "delivery_ratio": round(all_lat.size / expected, 5) if expected else 0.0,
                "latency_ms": _stats(all_lat),
                "server_cpu_percent": round(cpu, 1),
                "machine_cpu_percent": round(busy, 1),
                "kernel_input_queue_drops": drops,
            }
        )
    return {
        "benchmark": "crowd",
        "clients": args.clients,
        "members_before_storm": args.members,
        "receiver_processes": args.procs,
        "in_flight_per_process": args.in_flight,
        "join_storm": {
            "joiners": args.clients - args.members,
            "seconds_to_all_joined": round(storm_s, 2),
            "joins_per_s": round((args.clients - args.members) / storm_s),
            "join_latency_ms": _stats(joins),
            "joined": int(joins.size),
            "server_cpu_s": round(cpu_storm, 2),
            "machine_cpu_percent": round(busy_storm, 1),
            "kernel_input_queue_drops": drops_storm,
            "members_latency_before_ms": _stats(members_base),
            "members_latency_during_ms": _stats(members_storm),
            "members_delivery_ratio_during": round(members_storm.size / (args.members * storm_sent), 4),
        },
        "server_rss_mb": {"members": rss_members, "after_storm": rss_storm, "end": rss_end},
        "closed_by_server": {k: v for k, v in closes.items() if v},
        # Bulk receivers count every `state` of the steady phases (warm-ups included); a
        # receiver that fell behind gets coalesced state, so fewer messages but the final value.
        "bulk_receivers": {
            "receivers": bulk_n,
            "state_messages": bulk_count,
            "sent": steady_sent,
            "delivery_ratio": round(bulk_count / (bulk_n * steady_sent), 5) if bulk_n else None,
        },
        "converged": {"final_value": final_k, "receivers_on_it": sum(1 for v in lasts if v == final_k)},
        "machine": machine(),
        "results": steady_out,
    }


def table(r: dict[str, Any]) -> str:
    s = r["join_storm"]
    lines = [
        f"join storm: {s['joiners']:,} joined in {s['seconds_to_all_joined']} s "
        f"({s['joins_per_s']:,}/s; join p50 {s['join_latency_ms'].get('p50')} ms, "
        f"p99 {s['join_latency_ms'].get('p99')} ms; server CPU {s['server_cpu_s']} s, machine busy "
        f"{s.get('machine_cpu_percent')}%, packets dropped by the kernel's input queue "
        f"{s.get('kernel_input_queue_drops')}); server RSS {r['server_rss_mb']}",
        f"members' p99 before / during the storm: {s['members_latency_before_ms'].get('p99')} / "
        f"{s['members_latency_during_ms'].get('p99')} ms (delivered during: "
        f"{100 * s['members_delivery_ratio_during']:.1f}%)",
        f"closed by the server: {r['closed_by_server'] or 'none'}; converged: {r['converged']}",
        f"bulk receivers: {r['bulk_receivers']}",
        "",
        "Per rate (delivered: of the probes' expected deliveries):",
        rate_table(r),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10_000, help="receivers in all")
    ap.add_argument("--members", type=int, default=1000, help="receivers joined before the storm")
    ap.add_argument(
        "--procs", type=int, default=2, help="receiver processes for members, and as many for joiners"
    )
    ap.add_argument("--probe-every", type=int, default=10, help="every n-th joiner measures latency")
    ap.add_argument("--in-flight", type=int, default=500, help="handshakes at once per process")
    ap.add_argument("--storm-rate", type=float, default=10.0, help="updates/s during the storm (Hz)")
    ap.add_argument("--baseline", type=float, default=3.0, help="seconds measured before the storm")
    ap.add_argument("--storm-max", type=float, default=20.0, help="seconds the storm may take")
    ap.add_argument("--quiet", type=float, default=20.0, help="seconds of silence after the storm")
    ap.add_argument("--rates", default="10,60", help="comma-separated update rates (Hz) for everyone")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    ap.add_argument("--server-arg", action="append", help="passed on to `collective-sync serve`")
    ap.add_argument("--json", help="also write the JSON report to this file")
    args = ap.parse_args()
    import uvloop

    report = uvloop.run(run(args))
    emit(report, table(report), args.json)


if __name__ == "__main__":
    main()
