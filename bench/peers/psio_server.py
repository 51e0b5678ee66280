"""python-socketio peer for bench/peers.py: the socket.io server's events, in Python.

AsyncServer on aiohttp (python-socketio's native asyncio server; ASGI would add uvicorn and a
message-dict layer per send), under uvloop, WebSocket transport only. aiohttp offers
permessage-deflate only to a client that asks, and the benchmark's clients do not. Listens on
127.0.0.1 port 0 and prints the port.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import socketio
import uvloop
from aiohttp import web


async def main() -> None:
    sio = socketio.AsyncServer(
        async_mode="aiohttp", transports=["websocket"], http_compression=False, cors_allowed_origins=[]
    )

    @sio.on("join")
    async def join(sid: str, room: str) -> None:  # returning acks the join, if asked for
        await sio.enter_room(sid, room)

    @sio.on("update")
    async def update(sid: str, payload: dict[str, Any]) -> None:
        await sio.emit("state", payload, room=payload["room"], skip_sid=sid)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
