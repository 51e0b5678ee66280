"""Real end-to-end timing: a server, clients with wrong and drifting clocks, an impaired network.

Three followers run with local clocks offset by seconds and skewed by up to ±200 ppm; two reach
the server through the impairment proxy with different delays and jitter. They must agree with
the server's clock within a few ms, never step backwards once locked, and apply the same leader
update at true instants that agree within a few ms. Without the network clock their clocks are
seconds apart; without the jitter buffer their arrival times differ by tens of ms.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import pytest
from support import LoopLag, make_config

from collective_sync.client import Client
from collective_sync.client.playout import Applied
from collective_sync.netem import Impairment, ImpairProxy
from collective_sync.server.config import ServerConfig


@dataclass(frozen=True)
class SkewedClock:
    """A local clock that is `offset` seconds off and runs `ppm` fast; knows the true time."""

    offset: float
    ppm: float
    ref: float

    def __call__(self) -> float:
        true = time.time()
        return true + self.offset + (true - self.ref) * self.ppm * 1e-6

    def to_true(self, local: float) -> float:
        k = self.ppm * 1e-6
        return (local - self.offset + self.ref * k) / (1 + k)


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config(rate_per_second=1000, burst=1000)


async def test_clocks_agree_and_updates_apply_together(server) -> None:
    proxies = [
        ImpairProxy("127.0.0.1", server.port, Impairment(0.005, 0.002), Impairment(0.005, 0.001), seed=1),
        ImpairProxy("127.0.0.1", server.port, Impairment(0.030, 0.004), Impairment(0.030, 0.004), seed=2),
    ]
    ports = [await p.start_tcp() for p in proxies]
    urls = [f"ws://127.0.0.1:{ports[0]}/ws", f"ws://127.0.0.1:{ports[1]}/ws", server.url]
    now = time.time()
    clocks = [SkewedClock(3.2, 200, now), SkewedClock(-5.7, -200, now), SkewedClock(1.1, 120, now)]
    clients: list[Client] = []
    try:
        leader = await Client.connect(server.url)
        clients.append(leader)
        session = await leader.create("Lea", playout_delay=0.25)
        followers = []
        for url, clock in zip(urls, clocks, strict=True):
            c = await Client.connect(url, clock=clock)
            clients.append(c)
            followers.append(await c.join(session.id, "F"))

        # Watch every follower's network time for backward steps while everything below runs.
        readings: list[list[float]] = [[] for _ in followers]
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                for i, s in enumerate(followers):
                    readings[i].append(s.client.network_time())
                await asyncio.sleep(0.005)  # a sampling cadence, not a synchronisation

        watcher = asyncio.create_task(watch())

        # 1. Agreement with the server clock, checked repeatedly while probing goes on. The server
        # runs in this process: when the machine starves this loop, every exchange's reply is
        # late by as much, which no estimator can tell from path delay; that much is allowed.
        node_clock = server.server.node.clock
        starved = LoopLag()
        for _ in range(12):
            for s in followers:
                # After a burst of exchanges (not `locked`: its honest 1 ms bound can take a busy
                # machine longer than this test to claim on the 30 ms jittery link).
                await s.client.wait_for(lambda c: c.network.started and c.exchanges >= 20, 15)
                err = s.client.network_time() - node_clock()
                assert abs(err) < 0.003 + starved.worst, (
                    f"network clock off by {err * 1e3:.2f} ms (loop lag {starved.worst * 1e3:.1f} ms)"
                )
            await followers[1].client.time_exchange()
        starved.stop()

        # 2. The same update applies at the same true instant everywhere. Each follower reports
        # when its own network clock read the due instant (`network - due` after it): a loop that
        # woke late (busy machine) shows there, a wrong clock in the true instants.
        lag = LoopLag()
        applied: list[asyncio.Future[Applied]] = []
        for s in followers:
            fut: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
            applied.append(fut)

            def on_apply(rec: Applied, fut: asyncio.Future[Applied] = fut) -> None:
                if rec.kind == "state" and "geometry.R" in rec.msg.set and not fut.done():
                    fut.set_result(rec)

            s.on_apply(on_apply)
        at = leader.network_time()
        await session.set({"geometry.R": 2.5}, at=at)
        records = [await asyncio.wait_for(f, 5) for f in applied]
        true_instants = [
            clk.to_true(r.local) - (r.network - r.due) for clk, r in zip(clocks, records, strict=True)
        ]
        spread = max(true_instants) - min(true_instants)
        assert not any(r.late for r in records)
        assert spread < 0.005, f"applied {spread * 1e3:.2f} ms apart"
        # ... and that instant is the intended one: at + D on the server's clock, no later than
        # this process was able to run.
        intended = at + 0.25
        assert all(abs(r.due - intended) < 1e-6 for r in records)
        assert all(-0.005 < r.network - r.due < 0.005 + lag.worst for r in records), (records, lag.worst)

        # 3. A control message applies at its own `at` (no extra delay), together everywhere.
        controls: list[asyncio.Future[Applied]] = []
        for s in followers:
            cfut: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
            controls.append(cfut)

            def on_control(rec: Applied, fut: asyncio.Future[Applied] = cfut) -> None:
                if rec.kind == "control" and not fut.done():
                    fut.set_result(rec)

            s.on_apply(on_control)
        cat = leader.network_time() + 0.2
        await session.control("polarity_flip", {}, at=cat)
        crecords = [await asyncio.wait_for(f, 5) for f in controls]
        cinstants = [
            clk.to_true(r.local) - (r.network - r.due) for clk, r in zip(clocks, crecords, strict=True)
        ]
        assert max(cinstants) - min(cinstants) < 0.005
        assert all(r.due == cat for r in crecords)
        assert all(-0.005 < r.network - r.due < 0.005 + lag.worst for r in crecords), (crecords, lag.worst)
        lag.stop()

        stop.set()
        await watcher
        for series in readings:
            assert len(series) > 50
            assert all(b > a for a, b in itertools.pairwise(series)), "network time stepped back"
    finally:
        for c in clients:
            if not c.closed:
                await c.close()
        for p in proxies:
            await p.close()


async def test_a_one_way_delay_change_is_not_taken_for_drift(server) -> None:
    """Only the uplink gets 60 ms slower for a while (a queue fills, a route flaps), then
    recovers. Two-way timing cannot see which direction changed; a clock that takes it for
    drift ends up half of it (30 ms) off. This one holds its skew and its clean samples."""
    proxy = ImpairProxy(
        "127.0.0.1", server.port, Impairment(0.020, 0.0005), Impairment(0.020, 0.0005), seed=5
    )
    port = await proxy.start_tcp()
    client = await Client.connect(f"ws://127.0.0.1:{port}/ws", lock_timeout=10)
    node_clock = server.server.node.clock
    errors: list[float] = []

    async def watch(samples: int) -> None:
        """Record the clock's error after each of the next `samples` time exchanges."""
        for _ in range(samples):
            seen = client.exchanges
            await client.wait_for(lambda c, seen=seen: c.exchanges > seen, 10)
            errors.append(client.network_time() - node_clock())

    try:
        await client.wait_for(lambda c: c.network.locked and c.network.estimator.span > 4.0, 30)
        freq = client.network.freq
        lag = LoopLag()
        proxy.retune(up=Impairment(0.080, 0.0005))  # the uplink only
        await watch(12)
        proxy.retune(up=Impairment(0.020, 0.0005))
        await watch(4)
        lag.stop()
        worst = max(abs(e) for e in errors)
        assert worst < 0.005, f"followed the one-way change: {worst * 1e3:.1f} ms off"
        # Taking the change for drift would move the rate by thousands of ppm (60 ms over the
        # dozen seconds of the change: about 5,000). A loaded machine's late timestamps (a few ms
        # over a few seconds of baseline) move it by a few hundred at most: 1,000 tells them apart.
        assert abs(client.network.freq - freq) < 1000e-6, (client.network.freq - freq, lag.worst)
        # At most one re-acquisition. Known imperfection (issue-9 closing note): on this real,
        # jittery path (proxy and server in this process) about one run in five re-acquires once
        # around the change although the test's loop was not starved (1.2 ms worst lag seen);
        # the error bound and the rate above hold all the same. Two would be a regression.
        assert client.network.estimator.discontinuities <= 1, lag.worst
    finally:
        await client.close()
        await proxy.close()
