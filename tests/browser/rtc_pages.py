"""Helpers for tests of the live streams (WebRTC through the server's SFU) in real Chromium.

`publisher_browser` launches a Chromium whose microphone is a WAV file the test writes;
`start_publisher` makes a demo page there create a session, set a known engine sound and go live
with both slots. `install_tap` / `recording` capture what a listener's stream player outputs per
slot, placed in true time by the browser's own output timestamps.
"""

from __future__ import annotations

import base64
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from conftest import launch_chromium
from demo_pages import create_on_demo, open_page
from playwright.async_api import Browser, Page
from rtcpeer import peaks as spectrum_peaks  # the same analysis for the Python listener

__all__ = ["spectrum_peaks"]

RATE = 48000
QUANTUM = 128  # frames per render quantum
VOICE_TONE = 1330.0  # Hz: the steady part of the "voice" (not a harmonic of the engine's base)
# A known engine sound: base 55 Hz (harmonics 55, 110, 165 … Hz; an 18 ms period, so alignment by
# correlation is unambiguous within ±9 ms), swaying at 12 · 4 / 2π ≈ 7.6 Hz (not periodic).
ENGINE = {"oscillators.base": 55, "geometry.r": 0.5, "geometry.omega": 4, "geometry.n": 12}


def write_voice_wav(path: Path, seconds: float = 4.0) -> Path:
    """The publisher's "microphone": per second, 0.4 s of a VOICE_TONE tone, then a 0.4 s sweep
    400 Hz → 4 kHz (broadband: it pins the alignment of two recordings to one lag), then silence.
    Gated with 5 ms ramps, so the browser's noise suppression does not take it for noise."""
    t = np.arange(int(RATE * seconds)) / RATE
    second = t % 1.0
    tone = np.sin(2 * np.pi * VOICE_TONE * t) * (second < 0.5)
    s = second - 0.5  # time into the sweep
    sweep = np.sin(2 * np.pi * (400 * s + (4000 - 400) / (2 * 0.4) * s**2)) * (second >= 0.5)
    u = second % 0.5  # time into the current half second: sounding while u < 0.4
    gate = np.clip(np.minimum(u, 0.4 - u) / 0.005, 0.0, 1.0)
    x = 0.5 * (tone + sweep) * gate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((x * 32767).astype(np.int16).tobytes())
    return path


@asynccontextmanager
async def publisher_browser(wav: Path) -> AsyncIterator[Browser]:
    """A separate Chromium whose fake microphone plays `wav` (the flags are per browser)."""
    async with launch_chromium(
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"
    ) as browser:
        yield browser


@dataclass
class Publisher:
    page: Page
    session: str
    participant: str


async def start_publisher(
    browser: Browser,
    http: str,
    *,
    slots: tuple[str, ...] = ("voice", "engine"),
    engine: dict[str, float] | None = None,
    playout_delay: float | None = None,
    name: str = "Ana",
) -> Publisher:
    """A demo page that creates a session (and leads it), optionally sets the playout delay, sets
    the engine sound `engine` (default ENGINE), and goes live on `slots` with the demo's own
    Go live toggles: "voice" is the browser's microphone, "engine" the page's GAA engine output.
    Returns once the server lists every slot as live with its clock map."""
    page = await open_page(browser, f"{http}/")
    session, me = await create_on_demo(page, name)
    if playout_delay is not None:
        await page.evaluate(f"() => demo.session.control('playout_delay', {{ delay: {playout_delay} }})")
        await page.wait_for_function(f"() => demo.session.playout.buffer.delay === {playout_delay}")
    values = ENGINE if engine is None else engine
    for path, value in values.items():
        await page.evaluate(f"() => demo.change('{path}', {value})")
    await page.wait_for_function(
        "(v) => Object.entries(v).every(([p, x]) => demo.session.applied[p] === x)", arg=values, timeout=15000
    )
    await page.wait_for_function("() => demo.rtc?.listening", timeout=20000)
    for slot in slots:
        await page.click(f"#live-{slot}")
        await page.wait_for_function(f"() => demo.rtc.live.includes('{slot}')", timeout=15000)
    await page.wait_for_function(
        "(slots) => slots.every((s) => demo.session.media.some((m) => m.slot === s && m.at !== undefined))",
        arg=list(slots),
        timeout=15000,
    )
    return Publisher(page, session, me)


# Records what reaches each input (0: voice, 1: engine) with the context frame of every render
# quantum, so the recording is placed in context time even if the audio thread skipped quanta.
TAP = """
class Tap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = 128 * Math.ceil((sampleRate * 6) / 128);
    this.rings = [new Float32Array(this.size), new Float32Array(this.size)];
    this.firstFrame = new Float64Array(this.size / 128);
    this.n = 0; this.q = 0;
    this.port.onmessage = () => {
      const len = Math.min(this.n, this.size), k = len / 128;
      const take = (ring) => { const out = new Float32Array(len);
        for (let i = 0; i < len; i++) out[i] = ring[(this.n - len + i) % this.size]; return out; };
      const frames = [];
      for (let i = 0; i < k; i++) frames.push(this.firstFrame[(this.q - k + i) % this.firstFrame.length]);
      this.port.postMessage({ voice: take(this.rings[0]), engine: take(this.rings[1]), frames });
    };
  }
  process(inputs) {
    for (let s = 0; s < 2; s++) {
      const x = inputs[s] && inputs[s][0];
      for (let i = 0; i < 128; i++) this.rings[s][(this.n + i) % this.size] = x ? x[i] : 0;
    }
    this.n += 128;
    this.firstFrame[this.q++ % this.firstFrame.length] = currentFrame;
    return true;
  }
}
registerProcessor('tap', Tap);
"""

INSTALL_TAP = """async (code) => {
  const p = demo.rtc.player;
  await p.ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([code], {type: 'text/javascript'})));
  const tap = new AudioWorkletNode(p.ctx, 'tap', { numberOfInputs: 2, numberOfOutputs: 0 });
  p.gains.get('voice').connect(tap, 0, 0);
  p.gains.get('engine').connect(tap, 0, 1);
  window.pairs = [];  // (true time, context time) of the sample being heard
  setInterval(() => {
    const ts = p.ctx.getOutputTimestamp();
    const t = (performance.timeOrigin + ts.performanceTime) / 1000;
    if (ts.performanceTime > 0) pairs.push([t, ts.contextTime]);
  }, 20);
  const b64 = (a) => { const bytes = new Uint8Array(a.buffer); let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s); };
  window.dumpTap = () => new Promise((resolve) => {
    tap.port.onmessage = ({ data }) => resolve({ voice: b64(data.voice), engine: b64(data.engine),
      frames: data.frames, pairs, sr: p.ctx.sampleRate });
    tap.port.postMessage('dump');
  });
}"""


async def install_tap(page: Page) -> None:
    """Record the page's stream player per slot (after its gains) and its output timestamps.
    The page must be opened with `bypass_csp=True` (the tap is loaded from a blob)."""
    await page.evaluate(INSTALL_TAP, TAP)


@dataclass(frozen=True)
class Recording:
    """One page's stream output per slot, with the true time (s, wall clock) each sample was heard."""

    times: np.ndarray
    slots: dict[str, np.ndarray]
    sample_rate: float


def recording(dump: dict[str, Any]) -> Recording:
    firsts = np.asarray(dump["frames"], dtype=float)
    frames = (firsts[:, None] + np.arange(QUANTUM)).ravel()
    pairs = np.asarray(dump["pairs"])
    # The output clock as a line through the browser's (true, context) pairs: single headless
    # timestamps jitter by ms, the line through hundreds of them much less.
    slope, intercept = np.polyfit(pairs[:, 1], pairs[:, 0], 1)
    slots = {
        s: np.frombuffer(base64.b64decode(dump[s]), dtype=np.float32).astype(float)
        for s in ("voice", "engine")
    }
    return Recording(intercept + slope * frames / dump["sr"], slots, float(dump["sr"]))


def lag_between(
    a: Recording, b: Recording, slot: str, span: float = 2.0, reach: float = 0.02, back: float = 0.0
) -> tuple[float, float]:
    """How much later (s) page b plays `slot` than page a, in true time, and the normalised
    correlation there: b's recording is placed on a's time grid, the lag is the correlation peak
    within ±`reach` (refined between samples by a parabola). The window is the `span` seconds
    ending `back` seconds before the recordings' common end."""
    end = min(a.times[-1], b.times[-1]) - reach - back
    keep = (a.times >= end - span) & (a.times <= end)
    t, xa = a.times[keep], a.slots[slot][keep]
    step = float(np.mean(np.diff(t)))
    k = int(reach / step)
    grid = t[0] - k * step + step * np.arange(t.size + 2 * k)  # b over a's window widened by ±reach
    xb = np.interp(grid, b.times, b.slots[slot])
    n = 1 << int(np.ceil(np.log2(grid.size + t.size)))
    corr = np.fft.irfft(np.fft.rfft(xb, n) * np.conj(np.fft.rfft(xa, n)), n)[: 2 * k + 1]
    i = int(np.argmax(corr))
    frac = 0.0
    if 0 < i < 2 * k:
        y0, y1, y2 = corr[i - 1], corr[i], corr[i + 1]
        frac = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    norm = float(corr[i] / np.sqrt(np.sum(xa**2) * np.sum(xb[i : i + t.size] ** 2) + 1e-30))
    return (i + frac - k) * step, norm


def piece_correlations(
    a: Recording, b: Recording, slot: str, piece: float = 0.25, span: float = 4.0, reach: float = 0.005
) -> list[float]:
    """The correlation of `slot` between two pages in each `piece` of the last `span` seconds,
    each at its own lag within ±`reach`: whether both play the same audio, allowing their
    clocks to slew apart by the few hundred ppm a network clock corrects its phase at (which
    over whole seconds moves a 1330 Hz tone by a large part of its cycle)."""
    pieces = range(int(span / piece))
    return [lag_between(a, b, slot, span=piece, reach=reach, back=k * piece)[1] for k in pieces]
