"""Helpers for tests that drive the demo page in Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, Page


async def open_page(
    browser: Browser,
    url: str,
    *,
    init_script: str | None = None,
    bypass_csp: bool = False,
    viewport: tuple[int, int] = (1360, 900),
    mobile: bool = False,
) -> Page:
    """A page that records its uncaught script errors in `page.js_errors`; `init_script` runs
    before the page's own (e.g. a WebSocket spy); `bypass_csp` lets a test instrument load;
    `mobile` emulates a phone (touch, its viewport meta tag honoured, 3 device pixels per px)."""
    width, height = viewport
    page = await browser.new_page(
        viewport={"width": width, "height": height},
        bypass_csp=bypass_csp,
        is_mobile=mobile,
        has_touch=mobile,
        device_scale_factor=3 if mobile else 1,
    )
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors  # type: ignore[attr-defined]
    if init_script is not None:
        await page.add_init_script(init_script)
    await page.goto(url)
    return page


async def create_on_demo(
    page: Page, name: str, *, private: bool = False, public: bool = False
) -> tuple[str, str]:
    """Create a session from the demo's lobby (`public`: listed in it; `private`: invite only);
    (session id, the page's participant id)."""
    await page.fill("#create-form input[name=name]", name)
    if private:
        await page.check("#create-form input[name=private]")
    if public:
        await page.check("#create-form input[name=public]")
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#room:not([hidden])")
    return tuple(await page.evaluate("() => [demo.session.id, demo.session.me]"))  # type: ignore[return-value]
