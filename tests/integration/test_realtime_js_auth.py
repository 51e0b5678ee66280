"""The real `@supabase/realtime-js` against a server that requires the app's JWTs (Supabase
Auth's HS256 secret here): reconnecting, refreshing the token, refusals."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from rtjs import RealtimeJs, on, polarity, rt_url
from support import ServerProcess, make_config

from collective_sync.auth import AuthConfig
from collective_sync.protocol.errors import CloseCode
from collective_sync.server.config import ServerConfig

SECRET = "realtime-test-secret-of-thirty-two-bytes"
pytestmark = pytest.mark.timeout(90)


def token(user: str, ttl: float = 3600.0) -> str:
    now = time.time()
    claims = {"sub": user, "aud": "authenticated", "exp": now + ttl, "iat": now, "role": "authenticated"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config(auth_timeout=5.0)
    config.session.grace_period = 5.0  # long enough for a client to come back
    config.auth = AuthConfig(secret=SECRET, audience="authenticated", leeway=0.0)
    return config


async def test_reconnect_takes_back_the_same_participant_and_the_lead(server, js: RealtimeJs) -> None:
    await js.do("client", id="a", url=rt_url(server), apikey="anon-key", token=token("user-a"))
    await js.do("client", id="b", url=rt_url(server), apikey="anon-key", token=token("user-b"))
    topic = "collective-session-again1"
    await js.subscribed("a", topic, broadcast={"ack": True})
    await js.do("track", id="a", payload={"user_id": "user-a", "display_name": "Ana"})
    await js.subscribed("b", topic)
    before = (await js.do("presence", id="b"))["user-a"][0]
    node = server.server.node
    (conn,) = [c for c in node.conns.values() if "again1" in c.sessions and c.identity.user == "user-a"]
    mark = len(js.events)
    node._close(conn, CloseCode.GOING_AWAY, "test: the network dropped")  # as a restart would
    node.flush()
    await js.wait(on("a", "status", status="SUBSCRIBED"), after=mark)
    back = await js.wait(lambda e: on("b", "join", key="user-a")(e), after=mark)
    assert back["presences"][0]["participant_id"] == before["participant_id"]  # resumed, not new
    assert back["presences"][0]["role"] == "facilitator"  # and still leading
    assert await js.do("send", id="a", event="polarity_sync", payload=polarity(0.2)) == "ok"
    assert len(node.sessions["again1"].participants) == 2


async def test_token_refresh_keeps_the_connection_and_another_user_is_refused(server, js: RealtimeJs) -> None:
    short = token("user-a", ttl=2.0)
    exp = jwt.decode(short, options={"verify_signature": False})["exp"]
    await js.do("client", id="a", url=rt_url(server), apikey="anon-key", token=short)
    await js.subscribed("a", "collective-session-refresh1", broadcast={"ack": True})
    fresh = token("user-a", ttl=600.0)
    await js.do("setAuth", id="a", token=fresh)  # an access_token push, before the next send
    assert await js.do("send", id="a", event="cue", payload={}) == "ok"
    node = server.server.node
    (conn,) = [c for c in node.conns.values() if "refresh1" in c.sessions]
    assert conn.identity.expires > exp  # the connection took the fresh token
    # The first token's expiry passes (waiting for time itself, the thing under test); the
    # server checks expiries every 0.5 s and would have closed the connection with 4003.
    await asyncio.sleep(max(0.0, exp + 1.5 - time.time()))
    assert conn in node.conns.values() and not conn.closing
    assert await js.do("send", id="a", event="cue", payload={}) == "ok"
    mark = len(js.events)
    await js.do("setAuth", id="a", token=token("user-b"))
    refused = await js.wait(on("a", "system"), after=mark)
    assert refused["payload"]["status"] == "error" and "forbidden" in refused["payload"]["message"]
    assert conn.identity.user == "user-a"


async def test_a_join_without_a_valid_token_is_refused(server, js: RealtimeJs) -> None:
    await js.do("client", id="a", url=rt_url(server), apikey="anon-key-is-not-a-user-token")
    await js.do("channel", id="a", topic="collective-session-noauth", config={})
    status = await js.wait(on("a", "status"))
    assert status["status"] == "CHANNEL_ERROR" and "unauthorized" in status["err"]
    assert "noauth" not in server.server.node.sessions


async def test_after_a_restart_the_leader_is_still_the_leader(tmp_path, js: RealtimeJs) -> None:
    """A deploy: SIGTERM, start again on the same data; realtime-js reconnects on its own and its
    user takes back the same participant, still leading (the gateway keeps no token in memory)."""
    auth = ("--auth-jwt-secret", SECRET, "--auth-audience", "authenticated")
    proc = ServerProcess(tmp_path / "data", None, *auth)
    await proc.start()
    try:
        url = f"ws://127.0.0.1:{proc.port}/realtime/v1"
        await js.do("client", id="a", url=url, apikey="anon-key", token=token("user-a"))
        await js.do("client", id="b", url=url, apikey="anon-key", token=token("user-b"))
        topic = "collective-session-deploy1"
        await js.subscribed("a", topic, broadcast={"ack": True})
        await js.do("track", id="a", payload={"user_id": "user-a"})
        await js.subscribed("b", topic, broadcast={"ack": True})
        await js.do("track", id="b", payload={"user_id": "user-b"})
        before = (await js.do("presence", id="b"))["user-a"][0]
        assert before["role"] == "facilitator"
        mark = len(js.events)
        assert await proc.stop() == 0
        await proc.start()
        await js.wait(on("a", "status", status="SUBSCRIBED"), after=mark, timeout=20)
        await js.wait(on("b", "status", status="SUBSCRIBED"), after=mark, timeout=20)
        back = await js.wait(lambda e: on("b", "sync")(e) and "user-a" in e["state"], after=mark)
        assert back["state"]["user-a"][0]["participant_id"] == before["participant_id"]
        assert back["state"]["user-a"][0]["role"] == "facilitator"
        assert await js.do("send", id="a", event="polarity_sync", payload=polarity(0.4)) == "ok"
        assert await js.do("send", id="b", event="polarity_sync", payload=polarity(0.5)) == "error"
    finally:
        await proc.stop()
        await proc.cleanup()
