"""Helpers for tests that drive the demo page in Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, Page


async def open_page(
    browser: Browser, url: str, *, init_script: str | None = None, bypass_csp: bool = False
) -> Page:
    """A page that records its uncaught script errors in `page.js_errors`; `init_script` runs
    before the page's own (e.g. a WebSocket spy); `bypass_csp` lets a test instrument load."""
    page = await browser.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=bypass_csp)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors  # type: ignore[attr-defined]
    if init_script is not None:
        await page.add_init_script(init_script)
    await page.goto(url)
    return page


async def create_on_demo(page: Page, name: str, *, private: bool = False) -> tuple[str, str]:
    """Create a session from the demo's lobby; (session id, the page's participant id)."""
    await page.fill("#create-form input[name=name]", name)
    if private:
        await page.check("#create-form input[name=private]")
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#room:not([hidden])")
    return tuple(await page.evaluate("() => [demo.session.id, demo.session.me]"))  # type: ignore[return-value]
