"""The app's own client stack in real Chromium: `@supabase/supabase-js` (its UMD build, pinned
in tests/realtime/package.json) pointed at this server with `createClient(url, key)`, using
`.channel(...)` and `functions.invoke('get-server-time')` exactly as the app's hook does."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page
from rtjs import POLARITY, UMD, require_node_modules

from collective_sync.client import Client
from collective_sync.protocol.messages import ControlOut

pytestmark = pytest.mark.timeout(120)

# The hook's channel, with the bindings the app makes; everything seen goes to window.log.
OPEN = """async ([url, topic, user]) => {
  window.log = [];
  const client = supabase.createClient(url, 'anon-key');
  const channel = client.channel(topic, { config: { broadcast: { ack: true } } });
  channel
    .on('presence', { event: 'sync' }, () => log.push({ ev: 'sync', state: channel.presenceState() }))
    .on('presence', { event: 'join' }, ({ key, newPresences: p }) => log.push({ ev: 'join', key, p }))
    .on('presence', { event: 'leave' }, ({ key, leftPresences: p }) => log.push({ ev: 'leave', key, p }))
    .on('broadcast', { event: 'polarity_sync' }, ({ payload }) => log.push({ ev: 'polarity_sync', payload }))
    .on('broadcast', { event: 'state_update' }, ({ payload }) => log.push({ ev: 'state_update', payload }))
    .on('broadcast', { event: 'signal' }, ({ payload }) => {
      if (payload.to === user) log.push({ ev: 'signal', payload });   // the hook's own filter
      log.push({ ev: 'any_signal', payload });
    });
  const status = await new Promise((resolve) => channel.subscribe((s) => s !== 'CLOSED' && resolve(s)));
  window.client = client; window.channel = channel;
  return status;
}"""
SEND = "([event, payload]) => channel.send({ type: 'broadcast', event, payload })"
# A page on the native browser SDK (served at /sdk/), collecting the signals it gets.
NATIVE = """async ([url]) => {
  const { Client } = await import('/sdk/client.js');
  const c = await Client.connect(url);
  window.s = await c.join('web1', 'Web');
  window.got = [];
  s.addEventListener('signal', (e) => got.push(e.detail));
  return s.me;
}"""


async def open_page(browser: Browser, server: Any, user: str, topic: str) -> Page:
    context = await browser.new_context(bypass_csp=True)  # the UMD bundle is injected inline
    page = await context.new_page()
    await page.goto(f"{server.http}/healthz")  # the server's origin, as the app's own would be allowed
    await page.add_script_tag(path=str(UMD))
    assert await page.evaluate(OPEN, [server.http, topic, user]) == "SUBSCRIBED"
    assert (
        await page.evaluate("(p) => channel.track(p)", {"user_id": user, "display_name": user.upper()})
        == "ok"
    )
    return page


async def logged(page: Page, condition: str) -> Any:
    """Wait until some `window.log` entry `e` satisfies the JS `condition`; return it."""
    found = await page.wait_for_function(f"() => log.find((e) => {condition})", timeout=10_000)
    return await found.json_value()


async def test_supabase_js_in_chromium_against_the_server(server, browser: Browser) -> None:
    require_node_modules()
    topic = "collective-session-web1"
    ana = await open_page(browser, server, "ua", topic)  # first in: leads
    ben = await open_page(browser, server, "ub", topic)
    joined = await logged(ana, "e.ev === 'join' && e.key === 'ub'")
    assert joined["p"][0]["display_name"] == "UB"
    await logged(ben, "e.ev === 'sync' && e.state.ua && e.state.ub")

    native = await Client.connect(server.url, discipline=False)
    try:
        nat = await native.join("web1", "Nat")
        # The leader's polarity_sync (the hook's shape: payload plus timestamp) reaches the
        # other page and the native client; the follower's is refused.
        now_ms = await ana.evaluate("() => Date.now()")
        payload = {**POLARITY, "timestamp": now_ms}
        assert await ana.evaluate(SEND, ["polarity_sync", payload]) == "ok"
        got = await logged(ben, "e.ev === 'polarity_sync'")
        assert got["payload"]["polarityBalance"] == POLARITY["polarityBalance"]
        control = await nat.next_event(ControlOut)
        assert (control.seq, control.event, control.payload) == (1, "polarity_sync", POLARITY)
        assert await ben.evaluate(SEND, ["polarity_sync", payload]) == "error"

        # state_update: the sender's own area, tagged with its user id for the others.
        assert await ben.evaluate(SEND, ["state_update", {"userId": "ub", "polarityBalance": 0.4}]) == "ok"
        update = await logged(ana, "e.ev === 'state_update'")
        assert update["payload"] == {"userId": "ub", "polarityBalance": 0.4}

        # signal: only its target hears it (the app filters on `to` too; the server already did).
        sig = {"from": "ua", "to": "ub", "signal": {"type": "offer"}}
        assert await ana.evaluate(SEND, ["signal", sig]) == "ok"
        assert (await logged(ben, "e.ev === 'signal'"))["payload"] == sig
        assert await ana.evaluate("() => log.filter((e) => e.ev === 'any_signal').length") == 0

        # The native browser SDK in the same session: signals both ways with the supabase-js pages.
        sdk = await (await browser.new_context()).new_page()
        await sdk.goto(f"{server.http}/healthz")
        me = await sdk.evaluate(NATIVE, [server.url])
        assert await ana.evaluate(SEND, ["signal", {"to": me, "signal": {"candidate": 1}}]) == "ok"
        await sdk.wait_for_function("() => got.length === 1", timeout=10_000)
        ana_id = await ana.evaluate("() => channel.presenceState().ua[0].participant_id")
        got = await sdk.evaluate("() => got[0]")
        assert got == {
            "type": "signal",
            "session": "web1",
            "from": ana_id,
            "to": me,
            "signal": {"candidate": 1},
        }
        await sdk.evaluate("() => s.signal('ub', {answer: 2})")
        back = await logged(ben, "e.ev === 'signal' && e.payload.signal.answer === 2")
        assert back["payload"] == {"from": me, "to": "ub", "signal": {"answer": 2}}

        # get-server-time through supabase-js' functions client: serverTime in ms of network time.
        before = server.server.node.clock() * 1000.0
        result = await ana.evaluate(
            "() => client.functions.invoke('get-server-time')"
            ".then(({ data, error }) => ({ data, error: String(error) }))"
        )
        after = server.server.node.clock() * 1000.0
        assert result["error"] == "null"
        assert before <= result["data"]["serverTime"] <= after

        # Leaving the channel: the other page sees the leave with the meta the app reads.
        assert await ben.evaluate("() => client.removeChannel(channel)") == "ok"
        left = await logged(ana, "e.ev === 'leave' && e.key === 'ub'")
        assert left["p"][0]["user_id"] == "ub"
    finally:
        await native.close()
