"""The impairment proxy on real sockets: TCP gets slower but stays intact; UDP loses datagrams."""

from __future__ import annotations

import asyncio

from collective_sync.netem import Impairment, ImpairProxy


async def test_tcp_is_delayed_in_order_and_intact() -> None:
    received = bytearray()
    done = asyncio.Event()
    size = 200_000

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
            if len(received) >= size:
                done.set()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = ImpairProxy("127.0.0.1", port, up=Impairment(delay=0.05, jitter=0.01))
    pport = await proxy.start_tcp()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", pport)
        payload = bytes(i % 251 for i in range(size))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(payload)
        await writer.drain()
        await asyncio.wait_for(done.wait(), 10)
        assert loop.time() - t0 >= 0.05
        assert bytes(received) == payload
        writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_udp_drops_with_loss() -> None:
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    enough = asyncio.Event()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple) -> None:
            got.append(data)
            if data == b"last":
                enough.set()

    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    eport = echo.get_extra_info("sockname")[1]
    proxy = ImpairProxy("127.0.0.1", eport, up=Impairment(delay=0.001, loss=0.3), seed=4)
    pport = await proxy.start_udp()
    client, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", pport))
    try:
        for i in range(300):
            client.sendto(b"%d" % i)
            await asyncio.sleep(0.0005)  # pacing (1 kHz), like a media sender: bursts overflow buffers
        for _ in range(20):  # a marker that survives 30 % loss (all 20 lost: p = 0.3 ** 20)
            client.sendto(b"last")
            await asyncio.sleep(0.0005)
        await asyncio.wait_for(enough.wait(), 5)
        numbered = [g for g in got if g.isdigit()]
        assert 0.5 * 300 < len(numbered) < 0.9 * 300
    finally:
        client.close()
        echo.close()
        await proxy.close()
