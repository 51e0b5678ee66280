"""A Python (aiortc) WebRTC participant in its own process, for tests that must keep codecs out
of the server's process: `publish` creates a session, goes live on a slot with a tone and
prints the session id; `listen` joins, records a slot and prints what it heard (JSON).

Run: python tests/rtcpeer.py publish URL --slot voice --freq 440 --seconds 6
     python tests/rtcpeer.py listen URL SESSION --slot voice --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import sys
import time

import av
import numpy as np
from aiortc import MediaStreamTrack

from collective_sync.client import Client
from collective_sync.client.rtc import RtcLink
from collective_sync.ice import restrict_host_addresses

RATE = 48000


class Tone(MediaStreamTrack):
    """A sine at `freq` Hz, stereo, in real time (aiortc encodes it to Opus, here)."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self.freq = freq
        self.n = 0
        self.t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.t0 is None:
            self.t0 = time.monotonic()
        await asyncio.sleep(max(0.0, self.t0 + self.n / RATE - time.monotonic()))
        t = (self.n + np.arange(960)) / RATE
        x = (0.3 * np.sin(2 * np.pi * self.freq * t) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(x, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.n, fractions.Fraction(1, RATE)
        self.n += 960
        return frame


async def publish(args: argparse.Namespace) -> None:
    client = await Client.connect(args.url)
    session = await client.create("Publisher")
    link = await RtcLink.open(session)
    await link.publish(args.slot, Tone(args.freq))
    print(json.dumps({"session": session.id, "me": session.me}), flush=True)
    await asyncio.sleep(args.seconds)  # streaming is the point: the tone plays meanwhile
    await link.close()
    await client.close()


async def record(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """`seconds` of the track's first channel, after half a second of codec start-up."""
    chunks: list[np.ndarray] = []
    needed = int(seconds * RATE)
    while sum(len(c) for c in chunks) < needed + RATE // 2:
        frame = await track.recv()
        pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].astype(float)
        chunks.append(pcm)
    return np.concatenate(chunks)[RATE // 2 :][:needed]


def peaks(samples: np.ndarray, rate: float = RATE, count: int = 3, min_hz: float = 20.0) -> list[float]:
    """The `count` strongest spectral peaks (Hz), strongest first, 10 Hz apart at least."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    spectrum[freqs < min_hz] = 0
    found: list[float] = []
    for i in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[i] - f) >= 10 for f in found):
            found.append(float(freqs[i]))
        if len(found) == count:
            break
    return found


async def listen(args: argparse.Namespace) -> None:
    client = await Client.connect(args.url)
    session = await client.join(args.session, "Listener")
    link = await RtcLink.open(session)
    slots = args.slot.split(",")
    async with asyncio.timeout(args.seconds + 30):
        heard = await asyncio.gather(*(record(link.track(slot), args.seconds) for slot in slots))
    report = {
        slot: {"peaks": peaks(x), "rms": float(np.sqrt(np.mean(x**2)))}
        for slot, x in zip(slots, heard, strict=True)
    }
    first = report[slots[0]]["peaks"][0]
    print(json.dumps({"peak_hz": first, "slots": report, "me": session.me}), flush=True)
    await link.close()
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish")
    pub.add_argument("url")
    pub.add_argument("--slot", default="voice")
    pub.add_argument("--freq", type=float, default=440.0)
    pub.add_argument("--seconds", type=float, default=10.0)
    lis = sub.add_parser("listen")
    lis.add_argument("url")
    lis.add_argument("session")
    lis.add_argument("--slot", default="voice")
    lis.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])  # loopback only
    asyncio.run(publish(args) if args.command == "publish" else listen(args))


if __name__ == "__main__":
    sys.exit(main())
