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


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


async def publish(args: argparse.Namespace) -> None:
    client = await Client.connect(args.url)
    session = await client.create("Publisher")
    link = await RtcLink.open(session)
    await link.publish(args.slot, Tone(args.freq))
    print(json.dumps({"session": session.id, "me": session.me}), flush=True)
    await asyncio.sleep(args.seconds)  # streaming is the point: the tone plays meanwhile
    await link.close()
    await client.close()


async def listen(args: argparse.Namespace) -> None:
    client = await Client.connect(args.url)
    session = await client.join(args.session, "Listener")
    link = await RtcLink.open(session)
    track = link.track(args.slot)
    chunks: list[np.ndarray] = []
    needed = int(args.seconds * RATE)
    async with asyncio.timeout(args.seconds + 20):
        while sum(len(c) for c in chunks) < needed + RATE // 2:
            frame = await track.recv()
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].astype(float)
            chunks.append(pcm)
    samples = np.concatenate(chunks)[RATE // 2 :][:needed]  # past the codec's start-up
    print(json.dumps({"peak_hz": peak_hz(samples), "samples": len(samples), "me": session.me}), flush=True)
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
