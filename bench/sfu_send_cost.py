"""What one forwarded packet costs per subscriber, piece by piece (in-process, uvloop).

Why: the SFU's forwarding time is linear in the number of subscribers; this splits one
subscriber's share into the header rewrite, the SRTP protect and the `sendto`, and compares
the direct send (`ForwardingSender.forward`) with aiortc's own coroutine chain (`_send_rtp`).
One publisher and one subscriber on a real server, loopback only.

    python bench/sfu_send_cost.py
"""

from __future__ import annotations

import json
import time

import uvloop

from collective_sync.client import Client
from collective_sync.client.rtc import RtcLink
from collective_sync.server.app import start
from collective_sync.server.config import ServerConfig
from collective_sync.server.sfu.rtp import SeqRewriter, header

N = 5000
PAYLOAD = b"x" * 120  # a typical Opus packet at 96-128 kbit/s


def per_call(fn: object, n: int = N) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)  # type: ignore[operator]
    return (time.perf_counter() - t) / n * 1e6


async def main() -> None:
    server, port = await start(ServerConfig(port=0, data_dir=None))
    url = f"ws://127.0.0.1:{port}/ws"
    a, b = await Client.connect(url), await Client.connect(url)
    s = await a.create("Publisher")
    t = await b.join(s.id, "Listener")
    links = [await RtcLink.open(s), await RtcLink.open(t)]
    hub = server.node.media
    assert hub is not None
    sender = hub.peers[s.id][t.me].senders[0]
    dtls = sender.transport
    pair = dtls.transport._connection._nominated[1]
    protect = dtls._tx_srtp.protect  # each measurement on its own SSRC: libsrtp refuses a replay
    protected = protect(header(111, False, 1, 2, 13) + PAYLOAD)
    rw = SeqRewriter(0)
    old = time.perf_counter()
    for i in range(N):
        await dtls._send_rtp(header(111, False, i & 0xFFFF, i * 960, 11) + PAYLOAD)
    result = {
        "forward_us": per_call(lambda i: sender.forward(i & 0xFFFF, i * 960, False, PAYLOAD, 0)),
        "aiortc_send_rtp_us": (time.perf_counter() - old) / N * 1e6,
        "header_us": per_call(lambda i: header(111, False, i & 0xFFFF, i, 3) + PAYLOAD),
        "srtp_protect_us": per_call(
            lambda i: dtls._tx_srtp.protect(header(111, False, (40000 + i) & 0xFFFF, i, 3) + PAYLOAD)
        ),
        "sendto_us": per_call(lambda i: pair.protocol.transport.sendto(protected, pair.remote_addr)),
        "seq_rewrite_us": per_call(lambda i: rw.map("a", i & 0xFFFF)),
    }
    print(json.dumps({k: round(v, 2) for k, v in result.items()}))
    for link in links:
        await link.close()
    await a.close()
    await b.close()
    await server.stop()


if __name__ == "__main__":
    uvloop.run(main())
