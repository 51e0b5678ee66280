"""Identity over real sockets: a server that requires the app's JWTs (an HS256 secret and a JWKS
served by a local HTTP server, keys generated here), and every refusal the protocol documents."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from rawws import Raw
from support import make_config

from collective_sync.auth import AuthConfig
from collective_sync.client import Client, ServerError
from collective_sync.server.app import UnsafeDefault, _verifier
from collective_sync.server.config import ServerConfig

SECRET = "test-secret-of-at-least-thirty-two-bytes"
AUD, ISS = "authenticated", "http://127.0.0.1/auth/v1"
KEY_1 = ec.generate_private_key(ec.SECP256R1())
KEY_2 = ec.generate_private_key(ec.SECP256R1())


class Jwks:
    """A JWKS endpoint on loopback whose keys the test can rotate."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [self.jwk(KEY_1, "k1")]
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks.json"

    @staticmethod
    def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
        return {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "ES256"}


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    j = Jwks()
    yield j
    j.http.shutdown()


@pytest.fixture
def server_config(jwks: Jwks) -> ServerConfig:
    config = make_config(auth_timeout=1.0)
    config.auth = AuthConfig(secret=SECRET, jwks_url=jwks.url, audience=AUD, issuer=ISS, jwks_cooldown=0.0)
    return config


def token(user: str = "user-a", key: Any = SECRET, kid: str | None = None, **over: Any) -> str:
    now = time.time()
    claims = {"sub": user, "aud": AUD, "iss": ISS, "exp": now + 3600, "iat": now, **over}
    claims = {k: v for k, v in claims.items() if v is not None}
    alg = "HS256" if isinstance(key, str) else "ES256"
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


async def test_nothing_but_time_and_auth_before_a_valid_token(server) -> None:
    raw = await Raw.open(server.url)
    assert raw.welcome["auth"] is True
    err = await raw.request({"type": "create", "name": "Ana"}, rid=1)
    assert (err["type"], err["code"], err["rid"]) == ("error", "unauthorized", 1)
    for bad, code in (
        (token(exp=time.time() - 60), "token_expired"),
        (token(nbf=time.time() + 600), "unauthorized"),
        (token(aud="other"), "unauthorized"),
        (token(iss="http://evil/"), "unauthorized"),
        (jwt.encode({"sub": "x", "exp": time.time() + 60}, None, algorithm="none"), "unauthorized"),
        (token(key="a-different-secret-of-32-bytes-or-more"), "unauthorized"),
    ):
        err = await raw.request({"type": "auth", "token": bad}, rid=2)
        assert (err["type"], err["code"]) == ("error", code), bad
    assert server.server.node.sessions == {}  # nothing changed
    ok = await raw.request({"type": "auth", "token": token(user_metadata={"display_name": "Ana V."})}, rid=3)
    assert ok == {"type": "ack", "rid": 3}
    joined = await raw.request({"type": "create", "name": "typed"}, rid=4)
    assert joined["participants"][0]["name"] == "Ana V."  # the verified name claim wins


async def test_a_connection_that_never_authenticates_is_closed_4001(server) -> None:
    raw = await Raw.open(server.url)
    assert await raw.closed(5) == 4001


async def test_an_unknown_key_is_fetched_when_the_issuer_rotates_it_in(server, jwks: Jwks) -> None:
    raw = await Raw.open(server.url)
    fresh = token(key=KEY_2, kid="k2")
    err = await raw.request({"type": "auth", "token": fresh}, rid=1)
    assert (err["code"], err["rid"]) == ("unauthorized", 1)  # fetched again: still not published
    jwks.keys.append(Jwks.jwk(KEY_2, "k2"))
    try:
        assert await raw.request({"type": "auth", "token": fresh}, rid=2) == {"type": "ack", "rid": 2}
        assert await raw.request({"type": "auth", "token": token(key=KEY_1, kid="k1")}, rid=3) == {
            "type": "ack",
            "rid": 3,
        }
    finally:
        jwks.keys.pop()


async def test_a_user_cannot_act_as_another(server) -> None:
    ana = await Client.connect(server.url, token=token("user-a"), discipline=False)
    ben = await Client.connect(server.url, token=token("user-b"), discipline=False)
    try:
        s = await ana.create("Ana")
        with pytest.raises(ServerError) as err:  # A's resume token on B's connection
            await ben.join(s.id, "Ben", resume=s.token)
        assert err.value.code == "forbidden"
        assert list(s.participants) == [s.me]
        with pytest.raises(ServerError) as err:  # nor can a connection switch users
            await ana.refresh_token(token("user-b"))
        assert err.value.code == "forbidden"
        await ana.refresh_token(token("user-a"))  # a fresh token of the same user is fine
    finally:
        await ana.close()
        await ben.close()


async def test_a_token_that_runs_out_closes_4003_and_a_refreshed_one_does_not(server) -> None:
    issued: list[float] = []

    def short_lived() -> str:
        issued.append(time.time())
        return token(exp=time.time() + 2)

    keeps = await Client.connect(server.url, token=short_lived, discipline=False)
    lapses = await Client.connect(
        server.url, token=token(exp=time.time() + 2), reconnect=False, discipline=False
    )
    try:
        closed = await lapses.wait_closed(10)
        assert closed.code == 4003
        await keeps.wait_for(lambda _: len(issued) >= 3 and time.time() > issued[0] + 2.5, 15)
        assert keeps.ready and "lost" not in [e.kind for e in keeps.connection_events]
    finally:
        await keeps.close()


def test_anonymous_beyond_loopback_refuses_to_start_unless_told() -> None:
    with pytest.raises(UnsafeDefault, match="--allow-anonymous"):
        _verifier(ServerConfig(host="0.0.0.0"))
    assert _verifier(ServerConfig(host="0.0.0.0", allow_anonymous=True)) is None
    assert _verifier(ServerConfig(host="127.0.0.1")) is None
    assert _verifier(ServerConfig(host="0.0.0.0", auth=AuthConfig(secret=SECRET))) is not None


async def test_the_serve_command_refuses_an_anonymous_public_bind() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collective_sync", "serve", "--host", "0.0.0.0", "--memory",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"refusing to start" in err and b"--allow-anonymous" in err


async def test_a_foreign_browser_origin_cannot_open_a_websocket(server) -> None:
    """Cross-site WebSocket hijacking: Origin must be the server's own, or allowed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        await connect(server.url, origin="http://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert b"forbidden_origin" in refused.value.response.body
    same = f"http://127.0.0.1:{server.port}"
    async with connect(server.url, origin=same) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "welcome"
    server.config.allowed_origins = ("https://app.example",)
    async with connect(server.url, origin="https://app.example") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "welcome"
    async with connect(server.url) as ws:  # no Origin: not a browser
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_metrics_take_a_bearer_token_and_are_closed_beyond_loopback(server) -> None:
    from conformance.confwire import http

    node = server.server.node
    node.config.metrics_token = "m-token"
    assert (await http(server.http, "/metrics")).status == 401
    api = server.server.http
    assert api.handle("/metrics", "", "Bearer wrong").status == 401
    assert api.handle("/metrics", "", "Bearer m-token").status == 200
    node.config.metrics_token = None
    node.config.host = "0.0.0.0"  # as if listening beyond loopback, with no token
    try:
        assert api.handle("/metrics", "").status == 403
    finally:
        node.config.host = "127.0.0.1"
    assert (await http(server.http, "/metrics")).status == 200


async def test_limits_per_address_and_per_user(server) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    config = server.config
    config.max_connections_per_ip, config.max_connections_per_user = 3, 2
    config.user_rate_per_second, config.user_burst = 1.0, 4
    raws = [await Raw.open(server.url) for _ in range(3)]
    async with connect(server.url) as fourth:  # the address has 3 open: refused at once
        with pytest.raises(ConnectionClosed) as closed:
            await fourth.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029
    for k, raw in enumerate(raws):
        reply = await raw.request({"type": "auth", "token": token("user-a")}, rid=1)
        assert reply["type"] == ("ack" if k < 2 else "error"), reply
    assert reply["code"] == "too_many_connections"
    # The user's two connections share one budget: 4 messages, then rate_limited for both.
    a, b = raws[0], raws[1]
    for raw in (a, b, a, b):
        assert (await raw.request({"type": "meta", "session": "none-such", "meta": {}}, rid=2))["code"] == (
            "not_in_session"
        )
    await a.send({"type": "meta", "session": "none-such", "meta": {}, "rid": 3})
    assert (await a.error())["code"] == "rate_limited"  # dropped unread: no rid to echo
    await raws[2].close()  # a connection gone is counted out: a new one is let in
    again = await Raw.open(server.url)
    assert again.welcome["type"] == "welcome"


async def test_raw_moderation_invites_and_bounds(server) -> None:
    """docs/protocol.md, with a raw client: `invite` and `moderate` replies and broadcasts, and
    what happens just past each new bound (token 16 KiB, invite ttl 60 s … 30 days, invite 2 KiB)."""
    host = await Raw.open(server.url)
    assert (await host.request({"type": "auth", "token": token("host")}, rid=1))["type"] == "ack"
    too_long = await host.request({"type": "auth", "token": "x" * 16385}, rid=2)
    assert (too_long["type"], too_long["code"]) == ("error", "invalid_message")
    created = await host.request({"type": "create", "name": "H", "settings": {"private": True}}, rid=3)
    sid = created["session"]
    assert created["host"] == created["you"] and "locked" not in created
    for ttl in (59, 30 * 24 * 3600 + 1):
        err = await host.request({"type": "invite", "session": sid, "ttl": ttl}, rid=4)
        assert (err["type"], err["code"]) == ("error", "invalid_message"), ttl
    inv = await host.request({"type": "invite", "session": sid, "role": "witness", "ttl": 60}, rid=5)
    assert (inv["type"], inv["session"], inv["role"], inv["rid"]) == ("invite", sid, "witness", 5)
    assert set(inv) == {"type", "session", "invite", "id", "role", "expiresAt", "rid"}
    guest = await Raw.open(server.url)
    await guest.request({"type": "auth", "token": token("guest")}, rid=1)
    err = await guest.request({"type": "join", "session": sid, "name": "G", "invite": "x" * 2049}, rid=2)
    assert (err["type"], err["code"]) == ("error", "invalid_message")
    joined = await guest.request(
        {"type": "join", "session": sid, "name": "G", "invite": inv["invite"]}, rid=3
    )
    assert (joined["type"], joined["role"]) == ("joined", "observer")
    assert await host.request({"type": "moderate", "session": sid, "action": "lock"}, rid=6) == {
        "type": "ack",
        "rid": 6,
    }
    told = await guest.expect("moderated")
    assert told == {"type": "moderated", "session": sid, "action": "lock", "by": created["you"]}
    await host.request(
        {"type": "moderate", "session": sid, "action": "remove", "target": joined["you"]}, rid=7
    )
    assert await guest.expect("left") == {"type": "left", "session": sid, "reason": "removed"}
