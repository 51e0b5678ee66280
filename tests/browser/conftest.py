"""Real Chromium (Debian's package) driven by Playwright, on loopback only."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # Host candidates as addresses, not mDNS names (which the server does not resolve): loopback only.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def chromium_path() -> str:
    for c in CANDIDATES:
        if Path(c).exists():
            return c
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is not installed (scripts/test.sh installs Debian's chromium)")
    return found


@asynccontextmanager
async def launch_chromium(*extra: str) -> AsyncIterator[Browser]:
    """Debian's Chromium with the loopback-only flags, plus `extra` (flags are per browser)."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path(), args=[*FLAGS, *extra])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as b:
        yield b
