"""The demo on a phone and on a desktop, in real Chromium: every screen fits the width, passes
axe-core's WCAG 2.2 AA rules, can be used from the keyboard, and checks what people type.

axe-core (npm, pinned in tests/browser/package-lock.json, installed by scripts/test.sh) is
injected into each page as it is: no rule is switched off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp
from demo_pages import create_on_demo, open_page
from playwright.async_api import Browser, Page

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
# Viewports: a phone (mobile emulation), the narrowest phone layout, and a laptop.
VIEWPORTS = {"phone": ((390, 844), True), "narrow": ((320, 640), True), "desktop": ((1280, 800), False)}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def page_at(browser: Browser, url: str, view: str) -> Page:
    size, mobile = VIEWPORTS[view]
    return await open_page(browser, url, viewport=size, mobile=mobile, bypass_csp=True)  # axe is inline


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.2 A/AA violations on the page as it is now (id, impact, nodes)."""
    if not await page.evaluate("() => typeof axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text())
    result = await page.evaluate(
        "(tags) => axe.run(document, { runOnly: { type: 'tag', values: tags } })", WCAG
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
    ]


async def overflow(page: Page) -> dict[str, Any]:
    """How far the page is wider than its viewport (0: no horizontal scrolling), and any visible
    control whose box reaches past the right edge."""
    return await page.evaluate(
        """() => {
      const width = document.documentElement.clientWidth;
      const wider = document.documentElement.scrollWidth - width;
      const outside = [...document.querySelectorAll('button, input, select, a, [role=status]')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => {
          const r = el.getBoundingClientRect();
          return r.right > width + 0.5 || r.left < -0.5;
        })
        .map((el) => el.id || el.name || el.textContent.trim().slice(0, 30));
      return { wider, outside };
    }"""
    )


async def check_screen(page: Page, screen: str) -> None:
    fit = await overflow(page)
    assert fit == {"wider": 0, "outside": []}, (screen, fit)
    assert await axe_violations(page) == [], screen


@pytest.mark.timeout(120)
@pytest.mark.parametrize("view", ["phone", "desktop"])  # 320 px: the lobby test checks it
async def test_every_screen_fits_and_passes_axe(server, browser, view: str) -> None:
    lobby = await page_at(browser, f"{server.http}/", view)
    await lobby.wait_for_selector("#lobby:not([hidden])")
    await check_screen(lobby, "lobby")
    # (The checks can fail: an unnamed field and a too-wide box are caught, then removed.)
    await lobby.evaluate(
        """() => document.querySelector('main').insertAdjacentHTML('beforeend',
             '<input id="probe-field"><div id="probe-box" style="width: 2000px; height: 1px"></div>')"""
    )
    assert "label" in [v["id"] for v in await axe_violations(lobby)]
    assert (await overflow(lobby))["wider"] > 0
    await lobby.evaluate(
        "() => ['probe-field', 'probe-box'].forEach((id) => document.getElementById(id).remove())"
    )

    # The leader's room, and a follower's (joined by an invite link).
    sid, _ = await create_on_demo(lobby, "Ana")
    leader = lobby
    await check_screen(leader, "leader")
    invite = await page_at(browser, f"{server.http}/?s={sid}", view)
    await invite.wait_for_selector("#lobby:not([hidden])")
    await check_screen(invite, "invite")
    await invite.fill("#join-form input[name=name]", "Ben")
    await invite.press("#join-form input[name=name]", "Enter")
    await invite.wait_for_selector("#room:not([hidden])")
    follower = invite
    await leader.wait_for_function("() => document.querySelectorAll('#people li').length === 2")
    await check_screen(follower, "follower")
    await check_screen(leader, "leader with a follower")

    # A refused form shows its message in place.
    await follower.evaluate("() => demo.session.leave()")
    await follower.goto(f"{server.http}/?s=<b>x</b>&name=Ben")
    await follower.wait_for_selector("#join-msg:not([hidden])")
    await check_screen(follower, "join refused")

    # The host ends the session: the screen that says so.
    await leader.click("#end-session")
    await leader.click("#end-session")  # the confirming second press
    await leader.wait_for_selector("#ended:not([hidden])")
    await check_screen(leader, "ended")
    for page in (leader, follower):
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_sliders_are_named_and_say_their_value_with_its_unit(server, browser) -> None:
    page = await page_at(browser, f"{server.http}/", "phone")
    await create_on_demo(page, "Ana")
    names = {
        "Base frequency": "Hz",
        "Low-pass cutoff": "Hz",
        "Balance, light to dark": "",
        "Light amplitude": "",
        "Dark amplitude": "",
        "Major radius R": "",
        "Minor radius r": "",
        "Winding n": "",
        "Traversal ω": "rad/s",
    }
    for name, unit in names.items():
        slider = page.get_by_role("slider", name=name, exact=True)
        text = await slider.get_attribute("aria-valuetext")
        assert text is not None and text.endswith(unit), (name, text)
        # The readout shows the same for eyes, and is not a live region (no announcement per step).
        readout = page.locator(f".readout[data-for='{await slider.get_attribute('data-path')}']")
        assert await readout.text_content() == text
    assert await page.locator("#controls [role=status], #controls output").count() == 0
    meter = page.get_by_role("meter", name="Output level")
    assert await meter.get_attribute("aria-valuetext") == "silent"


async def test_the_keyboard_alone_joins_and_steers(server, browser) -> None:
    leader = await page_at(browser, f"{server.http}/", "desktop")
    # Tab order through the lobby: the create form, then the join form.
    await leader.wait_for_selector("#lobby:not([hidden])")
    order = []
    focused = "() => document.activeElement.name || document.activeElement.innerText"
    for _ in range(8):
        await leader.keyboard.press("Tab")
        order.append(await leader.evaluate(focused))
    assert order == ["name", "ceremony", "private", "public", "Create and lead", "session", "name", "Join"]
    await leader.focus("#create-form input[name=name]")
    await leader.keyboard.type("Ana")
    await leader.keyboard.press("Enter")
    await leader.wait_for_selector("#room:not([hidden])")
    # After the transition, focus is on the next thing to do: hearing the session.
    assert await leader.evaluate("() => document.activeElement.id") == "audio-btn"
    sid = await leader.evaluate("() => demo.session.id")

    # An invite link: focus waits in the name field.
    ben = await page_at(browser, f"{server.http}/?s={sid}", "phone")
    await ben.wait_for_selector("#lobby:not([hidden])")
    await ben.wait_for_function(
        "() => document.activeElement === document.querySelector('#join-form input[name=name]')"
    )
    await ben.keyboard.type("Ben")
    await ben.keyboard.press("Enter")
    await ben.wait_for_selector("#room:not([hidden])")
    assert await ben.evaluate("() => document.activeElement.id") == "audio-btn"

    # The leader steers with the arrow keys; the follower's page follows.
    slider = leader.get_by_role("slider", name="Winding n")
    before = float(await slider.input_value())
    await slider.focus()
    for _ in range(3):
        await leader.keyboard.press("ArrowRight")
    assert float(await slider.input_value()) == before + 3
    await ben.wait_for_function(f"() => demo.session.values['geometry.n'] === {before + 3}")
    for page in (leader, ben):
        assert page.js_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("name=%20%20%20", "name", "Enter a name"),
        ("name=" + "a" * 500, "name", "That name is 500 characters long; use at most 64."),
        ("name=" + "%F0%9F%8C%85" * 40, None, None),  # 40 emoji: 80 UTF-16 units, 40 characters
    ],
)
async def test_names_and_links_are_checked_before_sending(server, browser, query, field, message) -> None:
    page = await page_at(browser, f"{server.http}/", "phone")
    sid, _ = await create_on_demo(page, "Ana")
    other = await page_at(browser, f"{server.http}/?s={sid}&{query}", "phone")
    if field is None:  # a name the server takes joins at once
        await other.wait_for_selector("#room:not([hidden])")
        assert await other.evaluate("() => [...demo.session.name].length") == 40
        return
    await other.wait_for_selector("#join-msg:not([hidden])")
    assert message in await other.text_content("#join-msg")
    assert await other.get_attribute(f"#join-form input[name={field}]", "aria-invalid") == "true"
    assert await other.evaluate("() => demo.session") is None  # nothing was sent
    assert await other.evaluate("() => document.activeElement.name") == field


async def test_bad_session_ids_and_blank_names_are_explained_in_the_forms(server, browser) -> None:
    page = await page_at(browser, f"{server.http}/", "phone")
    await page.wait_for_selector("#lobby:not([hidden])")
    for bad in ("<b>x</b>", "a b", "https://example.invalid/?x=1", "x" * 65):
        await page.fill("#join-form input[name=session]", bad)
        await page.fill("#join-form input[name=name]", "Ben")
        await page.click("#join-form button[type=submit]")
        await page.wait_for_selector("#join-msg:not([hidden])")
        assert "not a session id or invite link" in await page.text_content("#join-msg"), bad
        assert await page.get_attribute("#join-form input[name=session]", "aria-invalid") == "true"
    await page.fill("#create-form input[name=name]", "   ")
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#create-msg:not([hidden])")
    assert "Enter a name" in await page.text_content("#create-msg")
    assert await page.evaluate("() => demo.session") is None


async def test_avatars_take_the_first_whole_character_and_names_are_trimmed(server, browser) -> None:
    page = await page_at(browser, f"{server.http}/", "phone")
    # An emoji with a skin-tone modifier, then a letter with a combining accent.
    for name, avatar in (("👋🏽 Wave", "👋🏽"), ("e\u0301mile", "E\u0301")):
        await page.goto(f"{server.http}/")
        await page.fill("#create-form input[name=name]", f"  {name}  ")
        await page.click("#create-form button[type=submit]")
        await page.wait_for_selector("#room:not([hidden])")
        me = page.locator("#people li").first
        assert await me.locator(".avatar").text_content() == avatar
        assert await page.evaluate("() => demo.session.name") == name  # trimmed before sending
        await page.evaluate("() => demo.session.leave()")


async def test_the_clock_speaks_words_with_the_numbers_on_demand(server, browser) -> None:
    page = await page_at(browser, f"{server.http}/", "phone")
    await create_on_demo(page, "Ana")
    words = page.locator("#clock-words")
    await page.wait_for_function(
        "() => /^In sync, ±\\d+(\\.\\d)? ms$/.test(document.getElementById('clock-words').textContent)"
    )
    assert "µs" not in await words.text_content()
    assert await page.is_hidden("#st-error")  # the engineer's numbers wait behind "Details"
    await page.get_by_text("Details", exact=True).click()
    await page.wait_for_function("() => document.getElementById('st-error').textContent.startsWith('±')")
    # The plot is drawn at the size it is shown, not stretched (3 device pixels per px here).
    await page.wait_for_function(
        """() => { const c = document.getElementById('plot');
                   return c.width === Math.round(c.clientWidth * 3)
                     && c.height === Math.round(c.clientHeight * 3); }"""
    )
    await check_screen(page, "clock details")


async def test_the_lobby_lists_live_sessions_and_joins_on_a_press(server, browser) -> None:
    sol = await page_at(browser, f"{server.http}/", "desktop")
    await sol.select_option("#create-form select[name=ceremony]", "dawn")
    sid, _ = await create_on_demo(sol, "Sol", public=True)
    lobby = await page_at(browser, f"{server.http}/", "narrow")  # the narrowest phone layout
    row = lobby.locator(f"#public-list button[data-sid='{sid}']")
    await row.wait_for()
    assert await row.locator(".row-title").text_content() == "Dawn · led by Sol"
    assert await row.locator(".row-meta").text_content() == "1 person · started just now"
    await check_screen(lobby, "lobby at 320 px")
    # The list is live: someone joining shows without a reload.
    ben = await page_at(browser, f"{server.http}/?s={sid}&name=Ben", "desktop")
    await ben.wait_for_selector("#room:not([hidden])")
    await lobby.wait_for_function(
        f"""() => document.querySelector("#public-list button[data-sid='{sid}'] .row-meta")
                    ?.textContent.startsWith('2 people')""",
        timeout=15000,
    )
    # A press joins, under the name given (and asks for one first).
    await row.click()
    await lobby.wait_for_selector("#join-msg:not([hidden])")
    assert "Enter a name" in await lobby.text_content("#join-msg")
    assert await lobby.evaluate("() => document.activeElement.name") == "name"
    await lobby.keyboard.type("Cleo")
    await row.click()
    await lobby.wait_for_selector("#room:not([hidden])")
    assert await lobby.evaluate("() => demo.session.id") == sid
    await check_screen(lobby, "joined from the lobby")
    # Once everybody has gone, the session leaves the list (though it waits out their grace).
    watcher = await page_at(browser, f"{server.http}/", "phone")
    await watcher.locator(f"#public-list button[data-sid='{sid}']").wait_for()
    for page in (sol, ben, lobby):
        await page.close()
    await watcher.locator(f"#public-list button[data-sid='{sid}']").wait_for(state="detached", timeout=15000)
    assert await watcher.is_visible("#public-empty")


# The last frame's angle and when it was drawn in true time (the browser's own clock, not the
# page's possibly simulated one), and how far the page's network time is from true time.
PHASE = """() => {
  const m = demo.visual.last;
  const drawn = (performance.timeOrigin + demo.visual.drawnAt) / 1000;
  const net = demo.client.networkTime(), wall = (performance.timeOrigin + performance.now()) / 1000;
  return { theta: m.theta, omega: m.omega, drawn, frames: demo.visual.frames, shift: net - wall };
}"""


@pytest.mark.timeout(120)
async def test_the_picture_shows_one_phase_on_every_screen(server, browser) -> None:
    """Three screens, one of them on a local clock 4 s fast and 300 ppm off: at the same true
    instant all show the traversal at the same angle, within one frame (what it moves in 1/60 s),
    because each draws at its network time. A follower sees which control the leader moves."""
    ana = await page_at(browser, f"{server.http}/", "desktop")
    sid, _ = await create_on_demo(ana, "Ana")
    ben = await page_at(browser, f"{server.http}/?s={sid}&name=Ben&offset=4&skew=300", "phone")
    cleo = await page_at(browser, f"{server.http}/?s={sid}&name=Cleo", "phone")
    pages = (ana, ben, cleo)
    for page in pages:
        await page.wait_for_selector("#room:not([hidden])")
        await page.wait_for_function(
            "() => demo.client.network.locked && demo.client.network.errorAt(demo.client.clock()) < 0.002",
            timeout=30000,
        )
    # A fast traversal, so that a frame's worth of angle is small against a clock's error.
    omega = 4.0
    await ana.evaluate(f"() => demo.change('geometry.omega', {omega})")
    for page in pages:
        await page.wait_for_function(f"() => demo.visual.last?.omega === {omega}", timeout=10000)
    readings = [await page.evaluate(PHASE) for page in pages]
    assert all(r["frames"] > 10 for r in readings)
    # Each frame's angle carried to one true instant (omega is steady now).
    w = max(r["drawn"] for r in readings)
    phases = [r["theta"] + r["omega"] * (w - r["drawn"]) for r in readings]
    spread = max(phases) - min(phases)
    assert spread < omega / 60, (spread, readings)
    # (Ben's page runs 4 s ahead on its own clock: an angle drawn from it would be 16 rad off.)

    # The leader moves R with the keyboard; the followers see that control marked as moving.
    slider = ana.get_by_role("slider", name="Major radius R")
    await slider.focus()
    await ana.keyboard.press("ArrowRight")
    for page in (ben, cleo):
        await page.locator(".field.moving input[data-path='geometry.R']").wait_for()
    assert await ana.locator(".field.moving").count() == 0  # the leader knows what it moves
    for page in pages:
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_a_listener_taps_to_hear_sets_volume_and_mutes_and_the_roster_shows_it(server, browser) -> None:
    ana = await page_at(browser, f"{server.http}/", "desktop")
    sid, _ = await create_on_demo(ana, "Ana")
    ben = await page_at(browser, f"{server.http}/?s={sid}&name=Ben", "phone")
    await ben.wait_for_selector("#room:not([hidden])")
    ben_id = await ben.evaluate("() => demo.session.me")
    row = ana.locator(f"#people li[data-id='{ben_id}']")
    await row.wait_for()
    audio = "(id) => demo.session.participants.get(id).meta?.audio ?? null"
    assert await ana.evaluate(audio, ben_id) is None  # not hearing yet (no sound started)
    assert await row.locator(".badge.muted").count() == 0
    assert await ben.is_visible("#tap-note")
    tap = ben.get_by_role("button", name="▶ Tap to hear")
    await tap.tap()  # a touch: the gesture browsers want before they play sound
    await ben.wait_for_function("() => demo.player?.running")
    await ben.locator("#tap-note").wait_for(state="hidden")  # once the player has started
    await ana.wait_for_function(f"(id) => ({audio})(id) === 'on'", arg=ben_id)
    await row.locator(".badge.listening").wait_for()

    # The volume by keys (the engine's master gain follows), then mute.
    gain = "demo.player.master.gain.value"
    volume = ben.get_by_role("slider", name="Volume", exact=True)
    await volume.focus()
    for _ in range(10):
        await ben.keyboard.press("ArrowLeft")  # 10 steps of 0.05
    await ben.wait_for_function(f"() => Math.abs({gain} - 0.5) < 0.01")
    assert await volume.get_attribute("aria-valuetext") == "50 %"
    await ben.get_by_role("button", name="Mute", exact=True).click()
    await ben.wait_for_function(f"() => {gain} < 0.001")
    await row.locator(".badge.muted").wait_for()
    assert await row.locator(".badge.listening").count() == 0
    await ben.get_by_role("button", name="Unmute", pressed=True).click()
    await ben.wait_for_function(f"() => Math.abs({gain} - 0.5) < 0.01")
    await row.locator(".badge.listening").wait_for()
    await check_screen(ben, "listening")
    for page in (ana, ben):
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_a_ceremony_starts_from_its_preset_which_late_joiners_get_too(server, browser) -> None:
    ana = await page_at(browser, f"{server.http}/", "desktop")
    await ana.select_option("#create-form select[name=ceremony]", "dusk")
    sid, _ = await create_on_demo(ana, "Ana", public=True)
    preset = await ana.evaluate("async () => (await import('/demo/presets.js')).PRESETS.dusk.values")
    # Sent through the state path: a late joiner gets it in its snapshot.
    ben = await page_at(browser, f"{server.http}/?s={sid}&name=Ben", "phone")
    await ben.wait_for_selector("#room:not([hidden])")
    for path, value in preset.items():
        await ben.wait_for_function(
            "([p, v]) => JSON.stringify(demo.session.values[p]) === JSON.stringify(v)", arg=[path, value]
        )
    # The late joiner's sliders show it, and the lobby names the ceremony for people.
    assert await ben.get_by_role("slider", name="Winding n").input_value() == str(preset["geometry.n"])
    lobby = await page_at(browser, f"{server.http}/", "phone")
    row = lobby.locator(f"#public-list button[data-sid='{sid}'] .row-title")
    await row.wait_for()
    assert (await row.text_content()).startswith("Dusk · led by Ana")


# The QR canvas as grey levels (row-major), for a real QR reader (zxing-cpp) to decode.
QR_PIXELS = """() => {
  const c = document.getElementById('qr');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const grey = new Array(c.width * c.height);
  for (let i = 0; i < grey.length; i++) grey[i] = d[4 * i];
  return { width: c.width, height: c.height, grey };
}"""


def read_qr(pixels: dict[str, Any]) -> list[str]:
    image = np.asarray(pixels["grey"], dtype=np.uint8).reshape(pixels["height"], pixels["width"])
    return [code.text for code in zxingcpp.read_barcodes(image)]


async def test_the_share_sheet_shows_the_invite_as_a_qr_code_a_phone_can_read(server, browser) -> None:
    # A private session: its link carries an invite (a public one's is the same link without it).
    private = True
    ana = await page_at(browser, f"{server.http}/", "phone")
    sid, _ = await create_on_demo(ana, "Ana", private=private)
    share = ana.get_by_role("button", name="Share")
    await share.click()
    sheet = ana.get_by_role("dialog", name="Invite people")
    await sheet.wait_for()
    link = await ana.input_value("#share-link")
    assert link.startswith(f"{server.http}/?s={sid}")
    assert ("&invite=" in link) == private  # a private session's link carries an invite
    assert read_qr(await ana.evaluate(QR_PIXELS)) == [link]
    await check_screen(ana, "share sheet")
    # Escape closes it and gives the focus back to the button that opened it.
    await ana.keyboard.press("Escape")
    await sheet.wait_for(state="hidden")
    assert await ana.evaluate("() => document.activeElement.id") == "share-btn"
    # The link read from the code lets someone in.
    ben = await page_at(browser, link.replace("?s=", "?name=Ben&s="), "phone")
    await ben.wait_for_selector("#room:not([hidden])")
    assert await ben.evaluate("() => demo.session.id") == sid


async def test_server_refusals_say_what_to_do(server, browser) -> None:
    """Refusals the page cannot prevent arrive as sentences that say what to do, never as a
    code and the server's technical message."""
    ana = await page_at(browser, f"{server.http}/", "phone")
    sid, _ = await create_on_demo(ana, "Ana")
    await ana.get_by_role("button", name="Lock session").click()
    ben = await page_at(browser, f"{server.http}/?s={sid}&name=Ben", "phone")
    await ben.wait_for_selector("#join-msg:not([hidden])")
    assert "locked by its host" in await ben.text_content("#join-msg")
    # A refusal the page has no sentence for (a state path the server rejects, sent without a
    # request id: it arrives as the session's error event) still says what to do, code included.
    await ana.evaluate("() => demo.session.set({'a..b': 1}, demo.client.networkTime())")
    toast = ana.locator(".toast.error", has_text="Something went wrong (invalid_path). Try again")
    await toast.wait_for()
