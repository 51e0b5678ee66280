"""The demo's private sessions and host tools in real Chromium (anonymous, on loopback).

A host creates a private session (never listed) and copies invite links from it: the demo asks
the server for an invite (`session.invite('participant' | 'witness')`) and keeps the link it
built in `demo.lastInviteLink` (the clipboard may be refused to a headless page; the tests read
the link from there). The host locks and unlocks the session, removes a participant and ends the
session with the buttons a person would press (the destructive ones take a second press, no
dialog); everyone else sees the outcome on their own page.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

from demo_pages import create_on_demo, open_page
from playwright.async_api import Page, expect

INVITE_NEEDED = "This session is private — ask the host for an invite link."
INVITE_REFUSED = "This invite is not valid any more — ask the host for a new link."
LOCKED = "This session is locked by its host"


async def joined(page: Page) -> str:
    """Wait until the page is in its session's room; its participant id."""
    await page.wait_for_selector("#room:not([hidden])")
    return await page.evaluate("() => demo.session.me")


async def copy_link(page: Page, button: str) -> str:
    """Press a copy-link button; the link the demo built (kept in `demo.lastInviteLink`)."""
    before = await page.evaluate("() => demo.lastInviteLink")
    await page.click(button)
    handle = await page.wait_for_function(
        "(before) => demo.lastInviteLink !== before && demo.lastInviteLink", arg=before
    )
    return await handle.json_value()


async def roster_size(page: Page, n: int) -> None:
    await page.wait_for_function(f"() => document.querySelectorAll('#people li').length === {n}")


async def host_and_ben(server, browser) -> tuple[Page, Page, str, str, str]:  # type: ignore[no-untyped-def]
    """Ana creates a (public) session on the demo and Ben joins by its link: (Ana's page, Ben's
    page, the session id, Ana's id, Ben's id), both rosters complete."""
    ana = await open_page(browser, f"{server.http}/")
    sid, host = await create_on_demo(ana, "Ana")
    ben = await open_page(browser, f"{server.http}/?s={sid}&name=Ben")
    ben_id = await joined(ben)
    await roster_size(ana, 2)
    return ana, ben, sid, host, ben_id


def no_js_errors(*pages: Page) -> None:
    for page in pages:
        assert page.js_errors == [], page.js_errors  # type: ignore[attr-defined]


async def test_a_private_session_is_joined_only_with_an_invite_link(server, browser) -> None:
    ana = await open_page(browser, f"{server.http}/")
    # Private disables "List it publicly" (a private session is never listed).
    assert await ana.is_enabled("#create-form input[name=public]")
    await ana.check("#create-form input[name=private]")
    assert await ana.is_disabled("#create-form input[name=public]")
    await ana.uncheck("#create-form input[name=private]")
    sid, host = await create_on_demo(ana, "Ana", private=True)
    assert await ana.evaluate("() => demo.session.host === demo.session.me && demo.session.settings.private")

    # The id alone does not get in: the lobby says why.
    bare = await open_page(browser, f"{server.http}/?s={sid}&name=Ben")
    await expect(bare.locator("#join-msg")).to_have_text(INVITE_NEEDED)
    assert await bare.is_hidden("#room")
    assert len(server.server.node.sessions[sid].participants) == 1

    # The host's invite link carries a token, and it gets in as a participant.
    link = await copy_link(ana, "#copy-link")
    assert link.startswith(f"{server.http}/?s={sid}&invite=")
    ben = await open_page(browser, f"{link}&name=Ben")
    ben_id = await joined(ben)
    assert await ben.evaluate("() => demo.session.role") == "participant"
    await roster_size(ana, 2)
    # Only the host can make invites: Ben has no link to copy, and no host tools.
    assert await ben.is_hidden("#copy-link")
    assert await ben.is_hidden("#copy-listen")
    assert await ben.is_hidden("#host-tools")

    # A tampered (or revoked, or expired) invite is refused with its own message.
    forged = await open_page(browser, f"{server.http}/?s={sid}&invite=not-an-invite&name=Eve")
    await expect(forged.locator("#join-msg")).to_have_text(INVITE_REFUSED)
    assert await forged.is_hidden("#room")
    # Pasting the real link into the join form works from that same page.
    await forged.fill("#join-form input[name=session]", link)
    await forged.fill("#join-form input[name=name]", "Eve")
    await forged.click("#join-form button[type=submit]")
    await joined(forged)

    # The listener link joins as an observer, whatever the page asks for.
    listen = await copy_link(ana, "#copy-listen")
    assert "&invite=" in listen and listen != link
    lia = await open_page(browser, f"{listen}&name=Lia")
    await joined(lia)
    assert await lia.evaluate("() => demo.session.role") == "observer"
    await roster_size(ana, 4)
    assert set(server.server.node.sessions[sid].participants) >= {host, ben_id}
    no_js_errors(ana, bare, ben, forged, lia)


async def test_the_host_locks_and_unlocks_the_session(server, browser) -> None:
    ana, ben, sid, _, _ = await host_and_ben(server, browser)
    lock = ana.locator("#lock-session")
    await expect(lock).to_have_attribute("aria-pressed", "false")
    assert await ben.is_hidden("#host-tools")
    for page in (ana, ben):
        await expect(page.locator("#locked-badge")).to_be_hidden()

    await lock.click()
    await expect(lock).to_have_attribute("aria-pressed", "true")
    for page in (ana, ben):
        await expect(page.locator("#locked-badge")).to_be_visible()
        await expect(page.locator("#locked-badge")).to_have_text("Locked")
    cara = await open_page(browser, f"{server.http}/?s={sid}&name=Cara")
    await expect(cara.locator("#join-msg")).to_contain_text(LOCKED)
    assert await cara.is_hidden("#room")

    await lock.click()
    await expect(lock).to_have_attribute("aria-pressed", "false")
    for page in (ana, ben):
        await expect(page.locator("#locked-badge")).to_be_hidden()
    dan = await open_page(browser, f"{server.http}/?s={sid}&name=Dan")
    await joined(dan)
    await roster_size(ana, 3)
    no_js_errors(ana, ben, cara, dan)


async def test_the_host_removes_a_participant(server, browser) -> None:
    ana, ben, sid, host, ben_id = await host_and_ben(server, browser)
    # No Remove on the host's own row, and none for anyone on Ben's page.
    assert await ana.locator(f"#people li[data-id='{host}'] button.remove").count() == 0
    assert await ben.locator("#people button.remove").count() == 0

    remove = ana.locator(f"#people li[data-id='{ben_id}'] button.remove")
    await expect(remove).to_have_text("Remove")
    await remove.click()  # the first press asks for a second one
    await expect(remove).to_have_text("Confirm")
    assert ben_id in server.server.node.sessions[sid].participants
    await remove.click()

    await expect(ben.locator("#ended")).to_be_visible()
    await expect(ben.locator("#ended-title")).to_have_text("You were removed from this session")
    await expect(ana.locator(f"#people li[data-id='{ben_id}']")).to_have_count(0)
    await roster_size(ana, 1)
    assert ben_id not in server.server.node.sessions[sid].participants
    no_js_errors(ana, ben)


async def test_the_host_ends_the_session(server, browser) -> None:
    ana, ben, _, _, _ = await host_and_ben(server, browser)
    end = ana.locator("#end-session")
    await end.click()
    await expect(end).to_contain_text("Confirm")
    assert await ben.is_visible("#room")
    await end.click()
    await expect(ben.locator("#ended-title")).to_have_text("The host ended this session")
    await expect(ana.locator("#ended-title")).to_have_text("You ended this session")
    no_js_errors(ana, ben)


def listed(http: str) -> list[str]:
    with urllib.request.urlopen(f"{http}/api/sessions", timeout=5) as reply:
        return [s["id"] for s in json.load(reply)["sessions"]]


async def test_a_private_session_is_never_listed(server, browser) -> None:
    ana = await open_page(browser, f"{server.http}/")
    # Listing is off by default, and Private overrides it.
    assert not await ana.is_checked("#create-form input[name=public]")
    await ana.check("#create-form input[name=public]")
    private, _ = await create_on_demo(ana, "Ana", private=True)
    sol = await open_page(browser, f"{server.http}/")
    public, _ = await create_on_demo(sol, "Sol", public=True)  # the listing works: a public one is in it
    ids = await asyncio.to_thread(listed, server.http)
    assert public in ids
    assert private not in ids
    no_js_errors(ana, sol)
