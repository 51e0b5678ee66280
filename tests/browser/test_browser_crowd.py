"""The browser SDK in a large session (real Chromium): `headcount` follows the server's head
count and `roster()` pages through everyone, with a roster limit of 2."""

from __future__ import annotations

import pytest
from support import make_config

from collective_sync.server.config import ServerConfig


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config()
    config.session.roster_limit = 2
    config.session.presence_interval = 0.05
    return config


async def test_a_page_counts_the_crowd_and_pages_through_it(server, connect, browser) -> None:
    lead = await (await connect()).create("Lea")
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")  # same origin as the SDK modules
    me = await page.evaluate(
        """async ([url, sid]) => {
          const { Client } = await import('/sdk/client.js');
          window.c = await Client.connect(url);
          window.s = await c.join(sid, 'Page', { role: 'observer' });
          return s.me;
        }""",
        [server.url, lead.id],
    )
    crowd = [await (await connect()).join(lead.id, f"Obs{i}", role="observer") for i in range(3)]
    await page.wait_for_function("() => window.s.headcount === 5", timeout=5000)
    assert await page.evaluate("() => s.participants.size") == 2  # Lea and the page itself
    ids = await page.evaluate(
        """async () => {
          const ids = [];
          let after = null;
          do {
            const page = await s.roster(after, 2);
            ids.push(...page.participants.map((p) => p.id));
            after = page.next ?? null;
          } while (after !== null);
          return ids;
        }"""
    )
    assert ids == [lead.me, me, *(c.me for c in crowd)]
    await crowd[0].leave()
    await page.wait_for_function("() => window.s.headcount === 4", timeout=5000)
