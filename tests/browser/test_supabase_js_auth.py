"""`@supabase/supabase-js` in real Chromium against a server that requires the app's JWTs: the
client's `accessToken` callback supplies the user's token (refreshed on heartbeats), and the
page reconnects as the same participant after its socket is cut."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from playwright.async_api import Browser
from rtjs import POLARITY, UMD, require_node_modules
from support import make_config

from collective_sync.auth import AuthConfig
from collective_sync.protocol.errors import CloseCode
from collective_sync.server.config import ServerConfig

SECRET = "browser-realtime-secret-of-32-bytes-or-more"
pytestmark = pytest.mark.timeout(120)

OPEN = """async ([url, token]) => {
  window.token = token; window.log = []; window.statuses = [];
  const client = supabase.createClient(url, 'anon-key', {
    accessToken: async () => window.token,
    realtime: {
      heartbeatIntervalMs: 300,
      heartbeatCallback: (status) => log.push({ ev: 'heartbeat', status }),
      reconnectAfterMs: () => 200,
    },
  });
  const config = { broadcast: { self: true, ack: true } };
  const channel = client.channel('collective-session-webauth', { config });
  channel
    .on('presence', { event: 'sync' }, () => log.push({ ev: 'sync', state: channel.presenceState() }))
    .on('broadcast', { event: '*' }, ({ event, payload }) => log.push({ ev: 'broadcast', event, payload }));
  channel.subscribe((status) => statuses.push(status));
  window.client = client; window.channel = channel;
}"""


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config(auth_timeout=5.0)
    config.session.grace_period = 10.0
    config.auth = AuthConfig(secret=SECRET, audience="authenticated", leeway=0.0)
    return config


def token(user: str, ttl: float) -> str:
    now = time.time()
    claims = {"sub": user, "aud": "authenticated", "exp": now + ttl, "iat": now}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_heartbeats_self_token_refresh_and_reconnect_in_chromium(server, browser: Browser) -> None:
    require_node_modules()
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await page.goto(f"{server.http}/healthz")
    await page.add_script_tag(path=str(UMD))
    short = token("user-a", 3.0)
    exp = jwt.decode(short, options={"verify_signature": False})["exp"]
    await page.evaluate(OPEN, [server.http, short])
    await page.wait_for_function("() => statuses.includes('SUBSCRIBED')", timeout=10_000)
    me = {"user_id": "user-a", "display_name": "Ana"}
    assert await page.evaluate("(p) => channel.track(p)", me) == "ok"

    # Heartbeats are answered.
    await page.wait_for_function(
        "() => log.filter((e) => e.ev === 'heartbeat' && e.status === 'ok').length >= 3", timeout=10_000
    )
    # self: true — the sender hears its own broadcast (and ack: true — `ok` once accepted).
    payload = {**POLARITY, "timestamp": await page.evaluate("() => Date.now()")}
    send = "(p) => channel.send({ type: 'broadcast', event: 'polarity_sync', payload: p })"
    assert await page.evaluate(send, payload) == "ok"
    await page.wait_for_function("() => log.some((e) => e.ev === 'broadcast' && e.payload.seq === 1)")

    # Token refresh: the callback's next token goes to the server on a heartbeat; the first
    # token's expiry then passes without the connection being closed (4003).
    await page.evaluate("(t) => { window.token = t; }", token("user-a", 600.0))
    node = server.server.node
    (conn,) = [c for c in node.conns.values() if c.identity is not None and c.identity.user == "user-a"]
    beats = await page.evaluate("() => log.filter((e) => e.ev === 'heartbeat').length")
    await page.wait_for_function(  # two heartbeats later the callback has been asked and its push sent
        f"() => log.filter((e) => e.ev === 'heartbeat' && e.status === 'ok').length >= {beats} + 2",
        timeout=10_000,
    )
    payload["timestamp"] = await page.evaluate("() => Date.now()")
    assert await page.evaluate(send, payload) == "ok"  # after the access_token push on the same socket
    assert conn.identity.expires > exp
    await asyncio.sleep(max(0.0, exp + 1.5 - time.time()))  # time itself passing is the test
    assert conn in node.conns.values() and not conn.closing

    # Reconnect: the socket is cut; the page comes back, resumed as the same participant, leading.
    before = await page.evaluate("() => channel.presenceState()['user-a'][0].participant_id")
    subscribed = await page.evaluate("() => statuses.filter((s) => s === 'SUBSCRIBED').length")
    node._close(conn, CloseCode.GOING_AWAY, "test: the network dropped")
    node.flush()
    await page.wait_for_function(
        f"() => statuses.filter((s) => s === 'SUBSCRIBED').length > {subscribed}", timeout=15_000
    )
    await page.wait_for_function(
        "(id) => channel.presenceState()['user-a']?.[0]?.participant_id === id", arg=before, timeout=10_000
    )
    assert await page.evaluate("() => channel.presenceState()['user-a'][0].role") == "facilitator"
    payload["timestamp"] = await page.evaluate("() => Date.now()")
    assert await page.evaluate(send, payload) == "ok"
    await context.close()
