"""Loopback forwarding proxy that applies an ImpairmentModel per direction (TCP and UDP)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

from .model import Impairment, ImpairmentModel

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK and not host.startswith("127."):
        raise ValueError(f"the impairment proxy only forwards on loopback, not to {host!r}")


@dataclass
class _Link:
    """Both sides of one proxied TCP connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    truncate: bool = False
    models: list[tuple[str, ImpairmentModel]] = field(default_factory=list)

    def abort(self) -> None:
        for w in (self.client, self.server):
            w.transport.abort()


@dataclass
class ImpairProxy:
    """Listens on `listen_host:listen_port`, forwards to `target` with `up`/`down` impairments.

    `up` is client → target, `down` target → client. Every connection gets its own seeded models
    so a run is reproducible for a given connection order.
    """

    target_host: str
    target_port: int
    up: Impairment = field(default_factory=Impairment)
    down: Impairment = field(default_factory=Impairment)
    seed: int = 0
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    _server: asyncio.Server | None = None
    _udp: asyncio.DatagramTransport | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _seeds: itertools.count = field(default_factory=itertools.count)
    _models: list[tuple[str, ImpairmentModel]] = field(default_factory=list)
    _links: list[_Link] = field(default_factory=list)  # live TCP connections, for `cut`

    def __post_init__(self) -> None:
        _check_loopback(self.target_host)
        _check_loopback(self.listen_host)

    async def start_tcp(self) -> int:
        self._server = await asyncio.start_server(self._on_client, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self.listen_port

    def retune(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        """Change one or both directions' impairment, for new and live connections alike (a
        route that flaps, a queue that fills): from now on each chunk gets the new spec."""
        self.up = up or self.up
        self.down = down or self.down
        for side, model in self._models:
            model.spec = self.up if side == "up" else self.down

    @property
    def links(self) -> int:
        """Live TCP connections through the proxy."""
        return len(self._links)

    def cut(self, client_port: int, mid_frame: bool = False) -> bool:
        """Break the connection from the client's local port `client_port` as a network would:
        at once (RST both ways), or `mid_frame`: the next chunk in either direction is cut
        short, then RST, so the receiver holds half a WebSocket frame when it dies. False when
        no live connection comes from that port."""
        for link in self._links:
            if link.client.get_extra_info("peername")[1] == client_port:
                if mid_frame:
                    link.truncate = True
                else:
                    link.abort()
                return True
        return False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        n = next(self._seeds)
        link = _Link(writer, up_w)
        self._links.append(link)
        pumps = []
        for src, dst, spec, k in ((reader, up_w, self.up, 0), (up_r, writer, self.down, 1)):
            model = ImpairmentModel(spec, seed=self.seed * 1000 + 2 * n + k)
            self._models.append(("up" if k == 0 else "down", model))
            link.models.append(self._models[-1])
            task = asyncio.create_task(self._pump(src, dst, model, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            pumps.append(task)
        both = asyncio.gather(*pumps, return_exceptions=True)
        both.add_done_callback(lambda _: self._forget(link))

    def _forget(self, link: _Link) -> None:
        with contextlib.suppress(ValueError):
            self._links.remove(link)
        for m in link.models:  # retune() need not visit connections long gone
            with contextlib.suppress(ValueError):
                self._models.remove(m)
        link.abort()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        model: ImpairmentModel,
        link: _Link | None = None,
    ) -> None:
        """Read chunks as they come; a second task writes each at its release time, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def writer() -> None:
            while True:
                release, data = await queue.get()
                if not data:
                    break
                delay = release - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if link is not None and link.truncate:
                    dst.write(data[: max(1, len(data) // 2)])  # half a frame, then the wire dies
                    link.abort()
                    break
                dst.write(data)
                await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        w = asyncio.create_task(writer())
        try:
            while data := await src.read(65536):
                queue.put_nowait((model.stream_release(loop.time()), data))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception):
                await w

    async def start_udp(self) -> int:
        """Forward datagrams (for WebRTC media): one upstream socket per client address."""
        loop = asyncio.get_running_loop()
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def __init__(self) -> None:
                self.transport: asyncio.DatagramTransport | None = None
                self.peers: dict[tuple, asyncio.DatagramTransport] = {}
                self.opening: dict[tuple, list[bytes]] = {}
                self.up = ImpairmentModel(proxy.up, seed=proxy.seed * 1000 + 998)
                self.down = ImpairmentModel(proxy.down, seed=proxy.seed * 1000 + 999)

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple) -> None:
                release = self.up.datagram_release(loop.time())
                if release is not None:
                    loop.call_at(release, self._to_target, data, addr)

            def _to_target(self, data: bytes, addr: tuple) -> None:
                back = self.peers.get(addr)
                if back is not None:
                    back.sendto(data)
                elif addr in self.opening:
                    self.opening[addr].append(data)  # upstream socket still being opened
                else:
                    self.opening[addr] = [data]
                    task = asyncio.ensure_future(self._open(addr))
                    proxy._tasks.add(task)
                    task.add_done_callback(proxy._tasks.discard)

            async def _open(self, addr: tuple) -> None:
                front = self

                class Back(asyncio.DatagramProtocol):
                    def datagram_received(self, data: bytes, _from: tuple) -> None:
                        release = front.down.datagram_release(loop.time())
                        if release is not None and front.transport is not None:
                            loop.call_at(release, front.transport.sendto, data, addr)

                transport, _ = await loop.create_datagram_endpoint(
                    Back, remote_addr=(proxy.target_host, proxy.target_port)
                )
                self.peers[addr] = transport
                for data in self.opening.pop(addr, []):
                    transport.sendto(data)

        self._udp, _ = await loop.create_datagram_endpoint(
            Front, local_addr=(self.listen_host, self.listen_port)
        )
        self.listen_port = self._udp.get_extra_info("sockname")[1]
        return self.listen_port
