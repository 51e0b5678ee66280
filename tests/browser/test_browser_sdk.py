"""The browser SDK (served at /sdk/) in real Chromium against the real server."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support import make_config

from collective_sync.engine.gaa import Engine, vectors
from collective_sync.server.config import ServerConfig

JOIN = """async ([url, sid, skew]) => {
  const { Client, browserClock } = await import('/sdk/client.js');
  const clock = () => browserClock() + skew;          // a clock that is `skew` seconds off
  const c = await Client.connect(url, { clock });
  const s = await c.join(sid, 'Browser');
  window.c = c; window.s = s; window.events = [];
  for (const kind of ['lost', 'connecting', 'open', 'resumed'])
    c.addEventListener(kind, () => window.events.push(kind));
  return { me: s.me, locked: c.network.locked, values: s.values };
}"""


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config()
    config.session.grace_period = 10.0  # the page must come back within it
    return config


async def test_browser_client_joins_follows_and_reconnects(server, connect, browser) -> None:
    leader = await connect()
    session = await leader.create("Lea")
    await session.set({"geometry.R": 1.5}, ack=True)
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")  # same origin as the SDK modules

    joined = await page.evaluate(JOIN, [server.url, session.id, 7.25])
    assert joined["values"] == {"geometry.R": 1.5}  # snapshot on join
    assert joined["locked"]
    await session.wait_for(lambda s: joined["me"] in s.participants)

    # Its network clock follows the server despite the 7.25 s error of its local clock.
    before = server.server.node.clock()
    net = await page.evaluate("() => c.networkTime()")
    after = server.server.node.clock()
    assert before - 0.01 < net < after + 0.01

    # State from the leader arrives, and applies at at + D on the page's playout.
    await session.set({"geometry.R": 3.5})
    await page.wait_for_function("() => window.s.values['geometry.R'] === 3.5", timeout=5000)
    await page.wait_for_function("() => window.s.applied['geometry.R'] === 3.5", timeout=5000)

    # A follower's control is refused with a typed error.
    code = await page.evaluate("() => s.control('polarity_flip', {}).then(() => 'sent', (e) => e.code)")
    assert code == "not_leader"

    # Drop the page's socket: it reconnects on its own, resumes the same participant, and gets the
    # control message that was sent while it was away.
    await page.evaluate("() => c.ws.close(4000, 'test drop')")
    await session.wait_for(lambda s: not s.participants[joined["me"]].connected)
    seq = await session.control("while_away", {"n": 1})
    await page.wait_for_function("() => window.events.includes('resumed')", timeout=10000)
    await page.wait_for_function(
        f"() => window.s.seq === {seq} && window.s.me === '{joined['me']}'", timeout=5000
    )
    await session.wait_for(lambda s: s.participants[joined["me"]].connected)


AUDIO = """async () => {
  const { AudioClock } = await import('/sdk/audio-clock.js');
  const ctx = new AudioContext();
  await ctx.resume();
  const osc = new OscillatorNode(ctx);
  osc.connect(ctx.destination);
  osc.start();
  const clock = new AudioClock(ctx, { network: { toLocal: (t) => t } });
  clock.start(50);
  window.audioClock = clock; window.ctx = ctx;
}"""


async def test_network_time_maps_onto_the_audio_context_clock(server, browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")
    await page.evaluate(AUDIO)
    # 3 s of output timestamps: a starved audio thread stalls the context clock by tens of ms at
    # times, which over 1 s of pairs alone reads as percent of drift.
    await page.wait_for_function("() => window.audioClock.fit.pairs.length >= 60", timeout=10000)
    r = await page.evaluate("""() => {
      const local = (performance.timeOrigin + performance.now()) / 1000;
      return { mapped: audioClock.contextTimeAtLocal(local), current: ctx.currentTime,
               latency: ctx.outputLatency + ctx.baseLatency, drift: audioClock.driftPpm,
               residual: audioClock.fit.residual };
    }""")
    assert abs(r["drift"]) < 20000  # sanity: the audio clock runs at the system's rate (±2 %)
    assert r["residual"] < 0.01  # headless Chromium timestamps jitter by a few ms under load
    assert r["latency"] > 0.02  # what the mapping has to account for, here
    # The sample heard now was rendered `latency` ago: the map lands there, not on currentTime.
    assert abs(r["mapped"] - (r["current"] - r["latency"])) < r["latency"] / 2


OFFLINE = """async ([timeline, t0, seconds, sr]) => {
  const ctx = new OfflineAudioContext(1, Math.round(seconds * sr), sr);
  await ctx.audioWorklet.addModule('/gaa/worklet.js');
  const node = new AudioWorkletNode(ctx, 'gaa-engine', {
    numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { timeline, clock: { ctx: 0, net: t0, rate: 1 } },
  });
  node.connect(ctx.destination);
  const buffer = await ctx.startRendering();
  return Array.from(buffer.getChannelData(0));
}"""


async def test_web_audio_render_matches_the_python_reference(server, browser) -> None:
    v = vectors()
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")
    t0 = v["timeline"][1]["at"] - 0.05  # across a base-frequency change and its ramp
    sr, seconds = 48000, 0.5
    rendered = np.array(await page.evaluate(OFFLINE, [v["timeline"], t0, seconds, sr]))
    ref = Engine()
    for step in v["timeline"]:
        ref.apply(step["changes"], step["at"])
    expected = ref.render(t0, rendered.size, sr)
    assert np.abs(expected).max() > 0.01  # there is sound to compare
    # Float32 output: within 1e-6 (-112 dB re full scale) of the double-precision reference.
    assert np.abs(rendered - expected).max() < 1e-6


SLEEPY = """async (url) => {
  const { Client, browserClock } = await import('/sdk/client.js');
  // A local clock the test can stop (as performance.now() stops while a phone sleeps) and set.
  window.lost = 0; window.frozenAt = null;
  const clock = () => window.frozenAt ?? browserClock() - window.lost;
  const c = await Client.connect(url, { clock });
  window.c = c; window.events = []; window.readings = [];
  c.addEventListener('clock', (ev) => window.events.push(ev.detail));
  // Read network time as a player would, and keep every reading (it must never go back).
  window.reader = setInterval(() => window.readings.push(c.networkTime()), 5);
  return c.network.locked;
}"""


async def network_error(page, server) -> float:
    """The page's network time minus the server's clock, bracketed by two server readings."""
    before = server.server.node.clock()
    net = await page.evaluate("() => c.networkTime()")
    after = server.server.node.clock()
    return net - after if net > after else (net - before if net < before else 0.0)


async def test_a_page_whose_clock_sleeps_steps_forward_and_is_back_within_2s(server, browser) -> None:
    """The page's local clock stands still for 3 s (a phone asleep), then runs on 3 s behind.
    Its network time steps forward (a `clock` event says so), never backwards, and is within a
    few ms of the server's again within 2 s. Then the clock is set back 2 s: network time
    carries on from where it was, and is back in sync as quickly."""
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")
    assert await page.evaluate(SLEEPY, server.url)
    assert abs(await network_error(page, server)) < 0.005

    await page.evaluate("() => { window.frozenAt = window.c.clock(); }")
    await page.wait_for_timeout(3000)  # the length of the nap, not a synchronisation
    # Wake: the clock runs on from where it stood, behind by the nap.
    woke = await page.evaluate(
        """() => { const real = (performance.timeOrigin + performance.now()) / 1000;
                   const before = window.lost; window.lost = real - window.frozenAt;
                   window.frozenAt = null; return window.lost - before; }"""
    )
    assert woke > 2.9
    await page.wait_for_function("() => window.events.some((e) => e.kind === 'step')", timeout=2000)
    await page.wait_for_function("() => window.c.network.locked", timeout=2000)
    assert abs(await network_error(page, server)) < 0.005
    step = await page.evaluate("() => window.events.find((e) => e.kind === 'step')")
    assert step["amount"] == pytest.approx(woke, abs=0.05)

    await page.evaluate("() => { window.lost += 2; }")  # set back 2 s
    await page.wait_for_function(
        "() => window.events.filter((e) => e.kind === 'reacquire').length >= 2", timeout=2000
    )
    await page.wait_for_function("() => window.c.network.locked", timeout=2000)
    assert abs(await network_error(page, server)) < 0.005

    readings = await page.evaluate("() => { clearInterval(window.reader); return window.readings; }")
    assert len(readings) > 500
    assert all(b >= a for a, b in itertools.pairwise(readings)), "network time went back"
