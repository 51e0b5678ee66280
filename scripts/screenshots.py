"""Screenshots of the demo for the docs (docs/figures/demo-*.png): the lobby, a session seen by
its leader and by a follower on a desktop, and the same on a phone (390 x 844, mobile emulation).

Run against a running server: `.venv/bin/python scripts/screenshots.py http://127.0.0.1:8765`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
CHROMIUM = "/usr/bin/chromium"


async def page(browser: Browser, url: str, phone: bool) -> Page:
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 800}
    p = await browser.new_page(viewport=size, is_mobile=phone, has_touch=phone, device_scale_factor=1)
    await p.goto(url)
    return p


async def main(http: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        sol = await page(browser, f"{http}/", phone=False)
        await sol.fill("#create-form input[name=name]", "Sol")
        await sol.select_option("#create-form select[name=ceremony]", "solstice")
        await sol.check("#create-form input[name=public]")
        await sol.click("#create-form button[type=submit]")
        await sol.wait_for_selector("#room:not([hidden])")
        lobby = await page(browser, f"{http}/", phone=False)
        await lobby.locator("#public-list button").first.wait_for()
        await lobby.screenshot(path=OUT / "demo-lobby.png")
        phone_lobby = await page(browser, f"{http}/", phone=True)
        await phone_lobby.locator("#public-list button").first.wait_for()
        await phone_lobby.screenshot(path=OUT / "demo-phone-lobby.png", full_page=True)

        ana = await page(browser, f"{http}/", phone=False)
        await ana.fill("#create-form input[name=name]", "Ana")
        await ana.select_option("#create-form select[name=ceremony]", "dawn")
        await ana.click("#create-form button[type=submit]")
        await ana.wait_for_selector("#room:not([hidden])")
        sid = await ana.evaluate("() => demo.session.id")
        ben = await page(browser, f"{http}/?s={sid}&name=Ben", phone=False)
        cleo = await page(browser, f"{http}/?s={sid}&name=Cléo", phone=True)
        for p in (ben, cleo):
            await p.wait_for_selector("#room:not([hidden])")
        await ana.wait_for_function("() => document.querySelectorAll('#people li').length === 3")
        await ana.wait_for_function("() => demo.client.network.locked")
        await ana.evaluate("() => demo.change('geometry.omega', 1.2)")
        await ben.wait_for_function("() => demo.session.applied['geometry.omega'] === 1.2")
        await ana.screenshot(path=OUT / "demo-leader.png")
        await ana.evaluate("() => demo.change('geometry.r', 0.45)")
        await ben.wait_for_selector(".field.moving")
        await ben.screenshot(path=OUT / "demo-follower.png")
        await cleo.wait_for_selector(".field.moving")
        await cleo.screenshot(path=OUT / "demo-phone-session.png")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765"))
