"""Live streams through the server's SFU, in real Chromium: heard by every listener at one instant.

A publisher page (its own Chromium, whose microphone is a WAV this test writes) leads a session
and goes live with its microphone ("voice": a tone and a sweep) and its GAA engine output
("engine": a known sound, base 55 Hz). Two listener pages play both streams through the SDK's
synchronised path (insertable streams → WebCodecs → a worklet at network time). A tap records
each listener's output per slot; the browser's output timestamps place it in true time. The
spectrum of each slot must hold what was published there, and the two listeners must play
each slot at the same true instant (the issue's bound: 5 ms; goal 1 ms).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from audio_timeline import STEP_LIMIT, output_step_ms
from demo_pages import create_on_demo, open_page
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout
from rtc_pages import (
    VOICE_TONE,
    install_tap,
    lag_between,
    piece_correlations,
    publisher_browser,
    recording,
    spectrum_peaks,
    start_publisher,
    write_voice_wav,
)
from support import ServerProcess

PEER = Path(__file__).resolve().parent.parent / "rtcpeer.py"  # a Python (aiortc) participant

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
# Playout delay D for the session: three Chromium renderers, the server and its SFU share two
# busy cores here; the demo's 0.15 s leaves little margin for frames the machine delays.
PLAYOUT_DELAY = 0.3
ALIGNED = 0.005  # s: the bound between two listeners (its goal is 1 ms)


async def listener(browser: Browser, http: str, sid: str, name: str) -> Page:
    page = await open_page(browser, f"{http}/?s={sid}&name={name}", bypass_csp=True)  # the tap is a blob
    await page.wait_for_function("() => demo.rtc?.listening", timeout=20000)
    return page


CLOCK_ERROR = "demo.client.network.errorAt(demo.client.clock())"
MAPPED = (
    "['voice', 'engine'].every((s) => demo.session.media.some((m) => m.slot === s && m.at !== undefined))"
)
STATE = f"""() => ({{ctx: demo.rtc?.player.ctx?.state, fit: demo.rtc?.player.audioClock?.fit.pairs.length,
  jumps: demo.rtc?.player.audioClock?.jumps,
  pairs: window.pairs?.length, listening: demo.rtc?.listening, error: {CLOCK_ERROR},
  media: demo.session.media}})"""


# The worst clock bound and the output fit's restarts from now on (polled by the page itself).
WATCH = f"""() => {{
  const jumps0 = demo.rtc.player.audioClock.jumps;
  window.watched = {{ bound: 0, jumps: 0 }};
  setInterval(() => {{
    watched.bound = Math.max(watched.bound, {CLOCK_ERROR});
    watched.jumps = demo.rtc.player.audioClock.jumps - jumps0;
  }}, 20);
}}"""


async def wait_for(page: Page, condition: str, timeout: float) -> None:
    """Wait for `condition` (a JS expression); on a timeout, fail with the page's stream state."""
    try:
        await page.wait_for_function(f"() => {condition}", timeout=timeout * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"{condition} not reached in {timeout} s: {await page.evaluate(STATE)}")


async def settled_clock(page: Page, bound: float, timeout: float = 30) -> None:
    """Wait until the page's network clock is within `bound` by its own error bound. A machine so
    starved that it stays above (its clock keeps re-acquiring) cannot judge simultaneity to a
    few ms: the run is skipped with the bound it reached, as the demo's audio test does."""
    try:
        await page.wait_for_function(f"() => {CLOCK_ERROR} < {bound}", timeout=timeout * 1000)
    except PlaywrightTimeout:
        reached = await page.evaluate(f"() => {CLOCK_ERROR}")
        pytest.skip(
            f"machine starved: a page's clock bound stayed at {reached * 1e3:.1f} ms (> {bound * 1e3} ms)"
        )


async def wait_settled(page: Page, condition: str, timeout: float) -> None:
    """`wait_for`, except that a page whose network clock lost its lock meanwhile (its error
    bound above 3 ms) or whose audio output stalled (its output-timestamp fit started afresh):
    the machine starved it, and the run is skipped as `settled_clock` does."""
    try:
        await page.wait_for_function(f"() => {condition}", timeout=timeout * 1000)
    except PlaywrightTimeout:
        reached = await page.evaluate(f"() => {CLOCK_ERROR}")
        if reached > 0.003:
            pytest.skip(f"machine starved: a page's clock bound went to {reached * 1e3:.1f} ms")
        jumps = await page.evaluate("() => demo.rtc?.player.audioClock?.jumps ?? 0")
        if jumps:
            pytest.skip(f"machine starved: a page's audio output stalled over 50 ms ({jumps} times)")
        pytest.fail(f"{condition} not reached in {timeout} s: {await page.evaluate(STATE)}")


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[str]:
    """The server in its own process (its http URL): the SFU forwards every packet as it comes,
    whatever this process does meanwhile (Playwright parsing megabytes of recordings)."""
    proc = ServerProcess(tmp_path / "data")
    await proc.start()
    try:
        yield f"http://127.0.0.1:{proc.port}"
    finally:
        await proc.stop()
        await proc.cleanup()


@pytest.mark.solo
@pytest.mark.timeout(240)
async def test_two_listeners_hear_both_slots_at_the_same_instant(server_process, browser, tmp_path) -> None:
    http = server_process
    wav = write_voice_wav(tmp_path / "voice.wav")
    async with publisher_browser(wav) as pub_browser:
        pub = await start_publisher(pub_browser, http, playout_delay=PLAYOUT_DELAY)
        # A Python (aiortc) listener too, in its own process: it records both slots.
        py_listener = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER),
            "listen",
            "--slot",
            "voice,engine",
            "--seconds",
            "3",
            "--",  # a session id may begin with "-" (base64url), which argparse takes for an option
            http.replace("http", "ws", 1) + "/ws",
            pub.session,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        pages = [await listener(browser, http, pub.session, name) for name in ("Ben", "Chloé")]
        try:
            assert py_listener.stdout is not None
            line = await asyncio.wait_for(py_listener.stdout.readline(), 60)
        finally:
            if py_listener.returncode is None:
                py_listener.kill()
            _, err = await py_listener.communicate()
        assert line, err.decode()[-2000:]
        heard = json.loads(line)["slots"]
        print("python listener:", heard)
        assert abs(heard["voice"]["peaks"][0] - VOICE_TONE) < 3, heard
        assert all(min(abs(f - 55 * k) for k in range(1, 9)) < 3 for f in heard["engine"]["peaks"]), heard
        for page in pages:
            await wait_for(page, MAPPED, 20)
            await wait_for(page, "demo.rtc.player.gains.size === 2", 20)  # the player starts with a stream
            await install_tap(page)
        # Each player's clock map needs seconds of output timestamps for a good line, and the tap
        # 6 s of audio; the network clocks must have settled.
        for page in pages:
            await settled_clock(page, 0.003, timeout=45)
            # 100 output-timestamp pairs (5 s); a clock jump (a starved output) starts them afresh.
            await wait_settled(page, "demo.rtc.player.audioClock.fit.pairs.length >= 100", 60)
            await wait_for(page, "pairs.length >= 300", 40)
        # The counters over the 6 s the tap will hold, and each page's clock bound and output
        # restarts meanwhile.
        for page in pages:
            await page.evaluate(WATCH)
        stats_before = [await page.evaluate("() => demo.rtc.stats()") for page in pages]
        marks = [await page.evaluate("() => pairs.length") for page in pages]
        for page, mark in zip(pages, marks, strict=True):
            await wait_for(page, f"pairs.length >= {mark + 300}", 30)
        stats = [await page.evaluate("() => demo.rtc.stats()") for page in pages]
        dumps = await asyncio.gather(*(page.evaluate("() => dumpTap()") for page in pages))
        recs = [recording(d) for d in dumps]
        # A page whose clock lost its lock while recording (its bound over 3 ms) or whose audio
        # output stalled (its output fit restarted): the machine starved it (skipped, as above).
        watched = [await page.evaluate("() => watched") for page in pages]
        if any(w["bound"] > 0.003 or w["jumps"] for w in watched):
            pytest.skip(f"machine starved while recording: clock bound and output stalls {watched}")
        # An underrun while recording shifts the page's output for good: the audio after it is
        # heard later than its time line says, which no player can undo (skipped, as above).
        pairs = [np.asarray(d["pairs"]) for d in dumps]  # the recordings' time lines are fitted to these
        steps = [output_step_ms(p, float(p[-1, 0]), span=np.inf) for p in pairs]
        if max(steps) > STEP_LIMIT:
            pytest.skip(f"machine starved: a page's audio output underran while recording ({steps} ms)")
        late = [
            {
                slot: (s[slot]["late"] - b[slot]["late"], s[slot]["received"] - b[slot]["received"])
                for slot in s
            }
            for s, b in zip(stats, stats_before, strict=True)
        ]
        # Frames that reach a page after their playout instant are not played (none do while
        # recording in a run with CPU to spare; test-output/rtc-alignment.txt reports them): a page
        # or server starved of CPU for that long cannot show simultaneity; skipped, as above.
        worst = max(n / max(total, 1) for per in late for n, total in per.values())
        if worst > 0.02:
            pytest.skip(f"machine starved: {worst:.0%} of a slot's frames came after their playout instant")

        report: list[str] = []
        for i, (rec, st) in enumerate(zip(recs, stats, strict=True)):
            tail = {s: x[-4 * int(rec.sample_rate) :] for s, x in rec.slots.items()}
            voice = spectrum_peaks(tail["voice"], rec.sample_rate, count=1)
            engine = spectrum_peaks(tail["engine"], rec.sample_rate, count=3)
            rms = {s: float(np.sqrt(np.mean(x**2))) for s, x in tail.items()}
            report.append(
                f"listener {i}: voice peak {voice} Hz, engine peaks {engine} Hz, rms {rms}, stats {st}"
            )
            print(report[-1])
            # Each slot carries what was published on it: the voice's tone; the engine's harmonics of 55 Hz.
            assert abs(voice[0] - VOICE_TONE) < 3, (i, voice)
            assert all(min(abs(f - 55 * k) for k in range(1, 9)) < 3 for f in engine), (i, engine)
            assert abs(engine[0] - 55) < 3, (i, engine)
            assert min(rms.values()) > 1e-3, (i, rms)
            for slot in ("voice", "engine"):
                assert st[slot]["played"] > 100 and st[slot]["errors"] == 0, (i, slot, st[slot])
        lags = {}
        for slot in ("voice", "engine"):
            # The lag in four 1 s windows (each holds a tone and a sweep: one lag fits); the
            # correlation in quarter seconds, where the pages' slewing clocks move little.
            windows = [lag_between(recs[0], recs[1], slot, span=1.0, back=k)[0] for k in range(4)]
            lags[slot] = max(windows, key=abs)
            corrs = sorted(piece_correlations(recs[0], recs[1], slot))
            median = corrs[len(corrs) // 2]
            report.append(
                f"{slot}: listener 1 plays {', '.join(f'{lag * 1e3:+.3f}' for lag in windows)} ms after"
                f" listener 0 (per 0.25 s correlation: median {median:.3f}, min {corrs[0]:.3f})"
            )
            print(report[-1])
            # The same decoded stream (a high correlation says it is the same audio), at the same instant.
            assert median > 0.9, (slot, corrs)
        report.append(f"late/received frames while recording, per listener: {late}")
        OUTPUT.mkdir(exist_ok=True)
        (OUTPUT / "rtc-alignment.txt").write_text("\n".join(report) + "\n")
        for slot, lag in lags.items():
            assert abs(lag) < ALIGNED, (slot, lag)
        for page in [pub.page, *pages]:
            assert page.js_errors == []  # type: ignore[attr-defined]


async def test_demo_go_live_shows_live_and_listening_and_the_volume_works(server, browser) -> None:
    # The engine only: this browser has no fake microphone (the stream test covers the voice).
    pub = await start_publisher(browser, server.http, slots=())
    ben = await listener(browser, server.http, pub.session, "Ben")
    leader = pub.page
    go_live = leader.get_by_role("group", name="Go live")
    await go_live.wait_for()  # visible to the leader once its link is drawn
    assert await ben.get_by_role("group", name="Go live").is_hidden()  # only the leader (or a facilitator)

    # Keyboard: focus the Engine toggle and press Enter.
    engine = leader.get_by_role("button", name="Go live with the engine's sound")
    await engine.focus()
    await leader.keyboard.press("Enter")
    await leader.wait_for_function("() => demo.rtc.live.includes('engine')", timeout=15000)
    # the toggle shows it once the page has drawn the new state
    await leader.get_by_role("button", name="Go live with the engine's sound", pressed=True).wait_for()
    # The listener sees the publisher live, and both marked as listening.
    row = ben.locator(f"#people li[data-id='{pub.participant}']")
    await row.locator(".badge.live", has_text="● Live: engine").wait_for()
    await ben.wait_for_function("() => document.querySelectorAll('#people .badge.listening').length === 2")
    await ben.wait_for_function(
        "() => /Listening: engine from Ana/.test(document.getElementById('stream-state').textContent)"
    )

    # State reaches the listener over the data channel too (and the WebSocket's copy changes nothing).
    await leader.evaluate("() => demo.change('geometry.R', 2)")
    await ben.wait_for_function("() => demo.session.values['geometry.R'] === 2")
    await ben.wait_for_function("() => demo.rtc.channelMessages > 0")

    # The stream volume slider (keyboard) and mute change the listener's gain.
    await ben.wait_for_function("() => demo.rtc.player.gains.size === 2")
    gain = "demo.rtc.player.gains.get('engine').gain.value"
    slider = ben.get_by_role("slider", name="Stream volume")
    await slider.focus()
    for _ in range(10):
        await ben.keyboard.press("ArrowLeft")  # 10 steps of 0.05
    await ben.wait_for_function(f"() => Math.abs({gain} - 0.5) < 0.01")
    mute = ben.get_by_role("button", name="Mute stream")
    await mute.focus()
    await ben.keyboard.press("Space")
    await ben.wait_for_function(f"() => {gain} < 0.001")
    await ben.get_by_role("button", name="Unmute stream", pressed=True).wait_for()
    await ben.get_by_role("button", name="Unmute stream").click()
    await ben.wait_for_function(f"() => Math.abs({gain} - 0.5) < 0.01")

    # Going off air removes the badge everywhere.
    await engine.click()
    await leader.wait_for_function("() => !demo.rtc.live.length")
    await row.locator(".badge.live").wait_for(state="detached")
    for page in (leader, ben):
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_without_webrtc_on_the_server_the_demo_stays_on_the_websocket(browser, tmp_path) -> None:
    proc = ServerProcess(tmp_path / "data", None, "--no-rtc")
    await proc.start()
    try:
        page = await open_page(browser, f"http://127.0.0.1:{proc.port}/")
        await create_on_demo(page, "Ana")
        # The offer is refused (rtc_unavailable): no link, no stream controls, no error shown.
        await page.wait_for_function("() => demo.rtc === null && !document.getElementById('room').hidden")
        assert await page.is_hidden("#stream")
        assert await page.evaluate("() => demo.errors") == []
        await page.evaluate("() => demo.change('geometry.R', 2)")
        await page.wait_for_function("() => demo.session.applied['geometry.R'] === 2")
        assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        await proc.stop()
        await proc.cleanup()


@pytest.mark.timeout(120)
async def test_a_server_restart_brings_the_stream_back(browser, tmp_path) -> None:
    """After a restart the server has no peer connections: the pages resume on the WebSocket,
    offer again (the `joined` reply shows them not listening), and the publisher goes live again."""
    proc = ServerProcess(tmp_path / "data")
    await proc.start()
    try:
        http = f"http://127.0.0.1:{proc.port}"
        pub = await start_publisher(browser, http, slots=("engine",))
        ben = await listener(browser, http, pub.session, "Ben")
        await wait_for(ben, "demo.rtc.player.gains.size === 2", 20)
        received = "demo.rtc.stats().then((s) => s.engine.received)"
        await stop_and_start(proc)
        for page in (pub.page, ben):
            await page.wait_for_function("() => demo.rtc.listening", timeout=30000)
        await ben.wait_for_function(
            "() => demo.session.media.some((m) => m.slot === 'engine' && m.at !== undefined)", timeout=30000
        )
        before = await ben.evaluate(f"() => {received}")
        await ben.wait_for_function(f"async () => (await {received}) > {before + 50}", timeout=20000)
        assert await pub.page.evaluate("() => demo.rtc.live") == ["engine"]
    finally:
        await proc.stop()
        await proc.cleanup()


async def stop_and_start(proc: ServerProcess) -> None:
    await proc.stop()
    await proc.start()
