"""Recovery in real Chromium: reloads resume, drops reconnect with one socket at a time, a session
that is gone ends the retries, and nothing can be pressed while the page is offline (issue 9).

Every page gets a spy on `WebSocket` (an init script, before the page's own scripts): it counts
the sockets the page opens and the most that were ever open or opening at once, and can send new
sockets to a path that refuses the upgrade, so that a test holds a page offline for as long as it
needs to look at it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
from collections.abc import Callable

import pytest
from demo_pages import create_on_demo
from demo_pages import open_page as open_demo_page
from playwright.async_api import Browser, Page, expect
from support import ServerProcess, make_config

from collective_sync.server.app import start
from collective_sync.server.config import ServerConfig
from collective_sync.server.ws import WsServer

RESTART = "server restarting; reconnect and resume"

WS_SPY = """(() => {
  const Native = window.WebSocket;
  window.sockets = []; window.maxLive = 0; window.blockWs = false;
  window.liveSockets = () =>
    sockets.filter((s) => s.readyState === Native.CONNECTING || s.readyState === Native.OPEN).length;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      // Blocked: the server answers this path with 404, so the upgrade fails at once.
      super(window.blockWs ? String(url).replace(/\\/ws$/, '/blocked') : url, protocols);
      sockets.push(this);
      window.maxLive = Math.max(window.maxLive, liveSockets());
    }
  };
})();"""

# The SDK on its own page: every connection event, with the state the client was in.
SDK = """async ([url, create, sid, role]) => {
  const { Client } = await import('/sdk/client.js');
  const c = await Client.connect(url);
  const s = create ? await c.create('Sol') : await c.join(sid, 'Obi', { role });
  window.c = c; window.s = s; window.events = [];
  for (const kind of ['lost', 'connecting', 'open', 'resumed', 'ended'])
    c.addEventListener(kind, (e) => events.push({ kind, ...e.detail, state: c.state }));
  return { sid: s.id, me: s.me };
}"""


@pytest.fixture
def server_config(request: pytest.FixtureRequest) -> ServerConfig:
    config = make_config(session_ttl=30.0)
    # Long enough that a participant survives a reload or a held-off reconnect on a busy machine;
    # a test that needs the grace period to run out passes a short one (indirect parametrize).
    config.session.grace_period = getattr(request, "param", 30.0)
    return config


async def open_page(browser: Browser, url: str) -> Page:
    return await open_demo_page(browser, url, init_script=WS_SPY)  # counts the page's sockets


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `predicate()` holds (polled), or fail after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)  # polling cadence, not synchronisation


def drop(server, cid: str) -> None:
    """Close one connection from the server's side, as a restarting server closes them all."""
    server.server.node.conns[cid].sink.close(1001, RESTART)


def end_session(node, sid: str) -> None:
    """End a session on the server now, as its expiry does (the node's own `_end`; its signature
    grew a time and a reason with the durable store, issue 9)."""
    session = node.sessions[sid]
    if "now" in inspect.signature(node._end).parameters:
        node._end(session, node.clock(), "ended by the test")
    else:
        node._end(session)


async def test_a_reloaded_leader_comes_back_as_the_same_participant_and_still_leads(server, browser) -> None:
    ana = await open_page(browser, f"{server.http}/")
    sid, me = await create_on_demo(ana, "Ana")
    assert await ana.evaluate("() => demo.session.isLeader")
    ben = await open_page(browser, f"{server.http}/?s={sid}&name=Ben")
    for page in (ana, ben):
        await page.wait_for_function("() => document.querySelectorAll('#people li').length === 2")
    # Ben records who leads, on every leader change and every 20 ms, throughout the reload.
    await ben.evaluate(
        """() => { window.leaders = [demo.session.leader];
                   demo.session.addEventListener('leader', (e) => leaders.push('event:' + e.detail.leader));
                   window.watch = setInterval(() => leaders.push(demo.session.leader), 20); }"""
    )

    await ana.reload()  # no name typed afterwards: the tab resumes from its sessionStorage
    await ana.wait_for_function(f"() => demo.session?.me === '{me}'", timeout=15000)
    await ana.wait_for_selector("#room:not([hidden])")
    assert await ana.is_hidden("#lobby")
    assert await ana.evaluate("() => demo.session.isLeader && demo.session.resumedSame")
    assert await ana.text_content("#steer") == "You are steering"
    await ana.wait_for_function(
        "() => !document.querySelector('#controls input[data-path=\"geometry.R\"]').disabled"
    )
    assert await ana.input_value("#create-form input[name=name]") == "Ana"  # the saved name, pre-filled
    # Ben sees Ana back (not away), and the same id led all along: no failover, no new leader.
    await ben.wait_for_function(
        f"() => demo.session.participants.get('{me}')?.connected !== false"
        f" && document.querySelectorAll('#people li.away').length === 0"
    )
    leaders = await ben.evaluate("() => { clearInterval(watch); return leaders; }")
    assert set(leaders) == {me}, leaders
    roster = server.server.node.sessions[sid].participants
    assert set(roster) == {me, await ben.evaluate("() => demo.session.me")}
    # The reloaded page still steers: its change reaches Ben.
    await ana.evaluate("() => demo.change('geometry.R', 2.5)")
    await ben.wait_for_function("() => demo.session.values['geometry.R'] === 2.5")

    # Leave forgets the tab's record: opening the invite link again asks for a name.
    key = f"collective-sync:session:{sid}"
    assert await ana.evaluate(f"() => sessionStorage.getItem('{key}') !== null")
    await ana.click("#leave-btn")
    await ana.wait_for_selector("#lobby:not([hidden])")
    assert await ana.evaluate(f"() => sessionStorage.getItem('{key}')") is None
    await ana.goto(f"{server.http}/?s={sid}")
    await ana.wait_for_selector("#lobby:not([hidden])")
    assert await ana.input_value("#join-form input[name=session]") == sid
    for page in (ana, ben):
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_b_sdk_resumes_after_a_drop_with_one_socket_at_a_time(server, browser) -> None:
    node = server.server.node
    page = await open_page(browser, f"{server.http}/healthz")
    joined = await page.evaluate(SDK, [server.url, True, None, None])
    me = joined["me"]
    await eventually(lambda: len(node.conns) == 1)

    for round_ in range(3):
        cid = await page.evaluate("() => { events.length = 0; return c.welcome.conn; }")
        drop(server, cid)
        await page.wait_for_function("() => events.some((e) => e.kind === 'resumed')", timeout=10000)
        events = await page.evaluate("() => events")
        assert [e["kind"] for e in events] == ["lost", "connecting", "open", "resumed"], (round_, events)
        lost, connecting, opened, resumed = events
        assert lost["code"] == 1001 and lost["reason"] == RESTART and lost["state"] == "lost"
        assert connecting["attempt"] == 0 and 0.125 <= connecting["delay"] <= 0.25
        assert opened["reconnect"] is True
        assert resumed == {
            "kind": "resumed",
            "session": joined["sid"],
            "same": True,
            "epochChanged": False,
            "you": me,
            "state": "open",
        }
        # The server holds exactly this page's one connection again: the old one is gone.
        await eventually(lambda: len(node.conns) == 1)
        assert await page.evaluate("() => liveSockets()") == 1
    assert await page.evaluate("() => [sockets.length, maxLive]") == [4, 1]
    participant = node.sessions[joined["sid"]].participants[me]
    assert participant.role == "leader"

    # Held offline: attempts back off; send() throws and request() rejects at once, no hanging.
    await page.evaluate("() => { blockWs = true; events.length = 0; }")
    drop(server, await page.evaluate("() => c.welcome.conn"))
    await page.wait_for_function(
        "() => events.filter((e) => e.kind === 'connecting').length >= 3", timeout=10000
    )
    refused = await page.evaluate(
        """async () => {
          const t = performance.now();
          const control = await s.control('x', {}).then(() => 'sent', (e) => e.message);
          const elapsed = performance.now() - t;
          let set = 'sent';
          try { s.set({ 'geometry.R': 1 }); } catch (e) { set = e.message; }
          return { control, elapsed, set, state: c.state };
        }"""
    )
    assert refused["control"] == "not connected" and refused["set"] == "not connected"
    assert refused["elapsed"] < 200
    assert refused["state"] in ("connecting", "lost")
    await page.evaluate("() => { blockWs = false; }")
    await page.wait_for_function("() => events.some((e) => e.kind === 'resumed')", timeout=15000)
    events = await page.evaluate("() => events")
    attempts = [e for e in events if e["kind"] == "connecting"]
    assert [e["attempt"] for e in attempts] == list(range(len(attempts)))
    for e in attempts:  # equal jitter: between half and all of min(8, 0.25 * 2^attempt)
        d = min(8.0, 0.25 * 2 ** e["attempt"])
        assert d / 2 <= e["delay"] <= d, e
    assert events[-1]["same"] is True and events[-1]["you"] == me
    await eventually(lambda: len(node.conns) == 1)
    assert await page.evaluate("() => maxLive") == 1

    # close() in the middle of a reconnect stops everything: no socket is opened after it.
    await page.evaluate("() => { blockWs = true; events.length = 0; }")
    drop(server, await page.evaluate("() => c.welcome.conn"))
    await page.wait_for_function(
        "() => events.filter((e) => e.kind === 'connecting').length >= 2", timeout=10000
    )
    opened = await page.evaluate("() => { c.close(); return sockets.length; }")
    assert await page.evaluate("() => c.state") == "closed"
    await page.evaluate("() => { blockWs = false; }")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.5  # longer than the next two backoff delays would have been
    while loop.time() < deadline:  # observing that nothing happens
        assert await page.evaluate("() => [sockets.length, liveSockets()]") == [opened, 0]
        assert not node.conns
        await asyncio.sleep(0.05)  # polling cadence
    assert page.js_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("server_config", [1.0], indirect=True)
async def test_b2_an_expired_token_rejoins_afresh_in_the_same_role(server, connect, browser) -> None:
    leader = await connect()
    session = await leader.create("Lea")
    page = await open_page(browser, f"{server.http}/healthz")
    joined = await page.evaluate(SDK, [server.url, False, session.id, "observer"])
    me = joined["me"]
    await session.wait_for(lambda s: me in s.participants)
    # Offline past the grace period (1 s): the server lets the observer go.
    await page.evaluate("() => { blockWs = true; }")
    drop(server, await page.evaluate("() => c.welcome.conn"))
    await session.wait_for(lambda s: me not in s.participants, timeout=10)
    await page.evaluate("() => { blockWs = false; }")
    await page.wait_for_function("() => events.some((e) => e.kind === 'resumed')", timeout=15000)
    resumed = await page.evaluate("() => events.find((e) => e.kind === 'resumed')")
    assert resumed["same"] is False and resumed["you"] != me
    assert await page.evaluate("() => [s.me, s.role, s.connected]") == [resumed["you"], "observer", True]
    await session.wait_for(lambda s: s.participants.get(resumed["you"]) is not None)
    assert session.participants[resumed["you"]].role == "observer"
    assert session.participants[resumed["you"]].name == "Obi"
    # The tab's record holds the new participant's token now.
    stored = await page.evaluate(
        f"() => JSON.parse(sessionStorage.getItem('collective-sync:session:{session.id}'))"
    )
    assert stored["token"] == await page.evaluate("() => s.token")
    assert stored["role"] == "observer" and stored["name"] == "Obi"


async def test_c_a_session_gone_while_away_ends_on_the_page_and_retries_stop(server, browser) -> None:
    node = server.server.node
    page = await open_page(browser, f"{server.http}/")
    sid, _ = await create_on_demo(page, "Ana")
    await page.evaluate(
        "() => { window.ended = []; demo.client.addEventListener('ended', (e) => ended.push(e.detail)); }"
    )
    # The page is away (its connection dropped) when the session ends on the server.
    for conn in list(node.conns.values()):
        conn.sink.close(1001, RESTART)
    end_session(node, sid)

    panel = page.locator("#ended")
    await expect(panel).to_be_visible(timeout=15000)
    await expect(panel).to_contain_text("This session has ended")
    assert await page.get_by_role("alert").filter(has_text="This session has ended").count() == 1
    assert await page.evaluate("() => document.activeElement?.id") == "ended"
    await expect(page.get_by_role("button", name="Start a new one")).to_be_visible()
    await expect(page.get_by_role("button", name="Back to lobby")).to_be_visible()
    assert await page.is_hidden("#room")
    detail = (await page.evaluate("() => ended"))[0]
    assert detail["session"] == sid and detail["code"] in ("session_ended", "session_not_found")
    assert await page.evaluate(f"() => sessionStorage.getItem('collective-sync:session:{sid}')") is None
    assert await page.evaluate("() => demo.client.sessions.size") == 0

    # No more retries: over longer than the next backoff delays, no socket is opened, the page
    # keeps its one connection (it stays usable), and no error toasts pile up.
    sockets = await page.evaluate("() => sockets.length")
    await eventually(lambda: len(node.conns) == 1)
    start = await page.evaluate("() => demo.errors.length")
    snapshot: dict[str, object] = {}

    async def look() -> None:
        snapshot.update(
            await page.evaluate(
                "() => ({ sockets: sockets.length, live: liveSockets(), state: demo.client.state,"
                " errors: demo.errors.length, toasts: document.querySelectorAll('.toast.error').length })"
            )
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while loop.time() < deadline:
        await look()
        assert snapshot == {"sockets": sockets, "live": 1, "state": "open", "errors": start, "toasts": 0}
        assert len(node.conns) == 1
        await asyncio.sleep(0.1)  # polling cadence: observing that nothing happens

    # "Start a new one": the create form, with the name kept, and it works.
    await page.get_by_role("button", name="Start a new one").click()
    await page.wait_for_selector("#lobby:not([hidden])")
    assert await page.is_hidden("#ended")
    assert await page.input_value("#create-form input[name=name]") == "Ana"
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#room:not([hidden])")
    new_sid = await page.evaluate("() => demo.session.id")
    assert new_sid != sid and await page.evaluate("() => demo.session.isLeader")
    assert page.js_errors == []  # type: ignore[attr-defined]


async def test_c2_a_reload_into_a_session_that_is_gone_shows_it_has_ended(server, browser) -> None:
    node = server.server.node
    page = await open_page(browser, f"{server.http}/")
    sid, _ = await create_on_demo(page, "Ana")
    end_session(node, sid)  # ends while the page is connected (a test shortcut)
    await page.reload()  # this tab has a record of it: resuming finds it gone
    await expect(page.locator("#ended")).to_be_visible(timeout=15000)
    await page.get_by_role("button", name="Back to lobby").click()
    await page.wait_for_selector("#lobby:not([hidden])")
    assert await page.is_hidden("#ended")
    assert await page.evaluate("() => location.search") == ""


async def test_d_controls_are_disabled_while_disconnected(server, browser) -> None:
    ana = await open_page(browser, f"{server.http}/")
    sid, _ = await create_on_demo(ana, "Ana")
    ben = await open_page(browser, f"{server.http}/?s={sid}&name=Ben")
    for page in (ana, ben):
        await page.wait_for_function("() => document.querySelectorAll('#people li').length === 2")
    inputs = "#controls input"
    handover = "#people button:has-text('Hand over')"
    assert not any([await i.is_disabled() for i in await ana.locator(inputs).all()])
    assert await ana.is_enabled(handover) and await ana.is_enabled("#leave-btn")

    # Ana's page loses its connection and cannot get it back (held offline by the spy).
    await ana.evaluate("() => { blockWs = true; }")
    drop(server, await ana.evaluate("() => demo.client.welcome.conn"))
    await ana.wait_for_function("() => demo.client.state !== 'open'")
    for i in await ana.locator(inputs).all():
        await expect(i).to_be_disabled()
    await expect(ana.locator(handover)).to_be_disabled()
    await expect(ana.locator("#leave-btn")).to_be_disabled()
    await expect(ana.locator("#banner")).to_be_visible()
    await expect(ana.locator("#conn-text")).to_have_text(
        re.compile(r"Reconnecting… \(attempt ([3-9]|\d\d+)\)"), timeout=10000
    )
    await expect(ana.locator("#lock")).to_have_text("offline")
    assert await ana.evaluate("() => demo.client.state") == "connecting"

    await ana.evaluate("() => { blockWs = false; }")
    await ana.wait_for_selector(".toast:has-text('Reconnected')", timeout=15000)
    for i in await ana.locator(inputs).all():
        await expect(i).to_be_enabled()
    await expect(ana.locator(handover)).to_be_enabled()
    await expect(ana.locator("#leave-btn")).to_be_enabled()
    await expect(ana.locator("#conn-text")).to_have_text("Connected")
    await expect(ana.locator("#banner")).to_be_hidden()
    await expect(ana.locator("#lock")).not_to_have_text("offline")
    assert await ana.evaluate("() => demo.session.isLeader")

    # A follower offline and back: re-enabled per role (its controls stay read-only, Leave works).
    await ben.evaluate("() => { blockWs = true; }")
    drop(server, await ben.evaluate("() => demo.client.welcome.conn"))
    await expect(ben.locator("#leave-btn")).to_be_disabled()
    await ben.evaluate("() => { blockWs = false; }")
    await ben.wait_for_selector(".toast:has-text('Reconnected')", timeout=15000)
    await expect(ben.locator("#leave-btn")).to_be_enabled()
    for i in await ben.locator(inputs).all():
        await expect(i).to_be_disabled()
    for page in (ana, ben):
        assert await page.evaluate("() => maxLive") == 1
        assert page.js_errors == []  # type: ignore[attr-defined]


async def two_pages_recording(
    browser: Browser, http: str, kinds: list[str]
) -> tuple[Page, Page, str, str, str]:
    """Ana creates a session on the demo, Ben joins by its link; both record the client's
    connection events of `kinds` in `window.seen` ({kind, ...detail})."""
    ana = await open_page(browser, f"{http}/")
    sid, ana_id = await create_on_demo(ana, "Ana")
    ben = await open_page(browser, f"{http}/?s={sid}&name=Ben")
    for page in (ana, ben):
        await page.wait_for_function("() => document.querySelectorAll('#people li').length === 2")
        await page.evaluate(
            "(kinds) => { window.seen = []; for (const k of kinds)"
            "   demo.client.addEventListener(k, (e) => seen.push({ kind: k, ...e.detail })); }",
            kinds,
        )
    return ana, ben, sid, ana_id, await ben.evaluate("() => demo.session.me")


async def test_e_pages_resume_by_themselves_after_a_server_restart(browser, tmp_path) -> None:
    """A real restart on the durable store (issue 9's server side): every page comes back as the
    same participant, the leader still leads, and nobody sees the session end."""
    config = make_config(session_ttl=30.0, data_dir=tmp_path)
    config.session.grace_period = 30.0
    first, port = await start(config)
    http = f"http://127.0.0.1:{port}"
    running: WsServer | None = first
    try:
        ana, ben, sid, ana_id, ben_id = await two_pages_recording(
            browser, http, ["lost", "connecting", "open", "resumed", "ended"]
        )

        running = None
        await first.stop()
        for page in (ana, ben):
            await page.wait_for_function("() => seen.some((e) => e.kind === 'connecting')")
            await expect(page.locator("#controls input").first).to_be_disabled()
        second, _ = await start(dataclasses.replace(config, port=port))
        running = second

        for page, me in ((ana, ana_id), (ben, ben_id)):
            await page.wait_for_selector(".toast:has-text('Reconnected')", timeout=20000)
            resumed = await page.evaluate("() => seen.filter((e) => e.kind === 'resumed')")
            assert [(r["session"], r["same"], r["you"]) for r in resumed] == [(sid, True, me)]
            assert await page.evaluate("() => seen.some((e) => e.kind === 'ended')") is False
            assert await page.evaluate("() => [demo.session.me, demo.session.leader, maxLive]") == [
                me,
                ana_id,
                1,
            ]
            await expect(page.locator("#conn-text")).to_have_text("Connected")
            assert await page.evaluate("() => demo.errors") == []
        await expect(ana.locator("#controls input").first).to_be_enabled()
        await eventually(lambda: len(second.node.conns) == 2)
        # The restarted server has them both back, connected, and the leader's changes flow.
        await ana.evaluate("() => demo.change('geometry.R', 1.25)")
        await ben.wait_for_function("() => demo.session.values['geometry.R'] === 1.25")
        for page in (ana, ben):
            assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        if running is not None:
            await running.stop()


async def test_f_after_a_crash_pages_resume_and_are_told_what_was_lost(browser, tmp_path) -> None:
    """The server process is killed (SIGKILL) and started again on its data: the pages come back
    as the same participants, learn that the epoch changed (state since the last snapshot may be
    lost), and say so, instead of "nothing was missed"."""
    server = ServerProcess(tmp_path)
    await server.start()
    http = f"http://127.0.0.1:{server.port}"
    try:
        ana, ben, sid, ana_id, ben_id = await two_pages_recording(browser, http, ["resumed", "ended"])
        await server.kill()
        await server.start()
        for page, me in ((ana, ana_id), (ben, ben_id)):
            await page.wait_for_function("() => seen.length > 0", timeout=30000)
            assert await page.evaluate("() => seen") == [
                {"kind": "resumed", "session": sid, "same": True, "epochChanged": True, "you": me}
            ]
            await page.wait_for_selector(".toast:has-text('The server restarted')")
            assert await page.evaluate("() => [demo.session.me, demo.session.leader, maxLive]") == [
                me,
                ana_id,
                1,
            ]
        await expect(ana.locator("#controls input").first).to_be_enabled()
        await ana.evaluate("() => demo.change('geometry.R', 0.75)")
        await ben.wait_for_function("() => demo.session.values['geometry.R'] === 0.75")
        for page in (ana, ben):
            assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        await server.cleanup()
