"""Issue 9's restart test: a leader and three Python participants streaming controls and state,
two Chromium pages following; the server process is stopped (SIGTERM) or killed (SIGKILL) and
started again on its data. Everyone is back as the same participant, no control lost or
duplicated anywhere, and the final state is identical everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ceremony import all_back, ceremony, check_controls, check_state
from playwright.async_api import Browser, Page
from support import ServerProcess

FOLLOW = """async ([url, sid, name]) => {
  const { Client } = await import('/sdk/client.js');
  const c = await Client.connect(url, { storage: false });
  const s = await c.join(sid, name);
  window.c = c; window.s = s; window.log = []; window.resumed = [];
  s.addEventListener('control', (e) => log.push([e.detail.seq, e.detail.payload.i]));
  c.addEventListener('resumed', (e) => resumed.push(e.detail));
  let n = 0;  // this page's own state, written 10 times a second while connected
  const beat = () => { if (c.state === 'open') s.set({ [`participants.${s.me}.beat`]: ++n }); };
  window.writer = setInterval(() => { try { beat(); } catch {} }, 100);
  return s.me;
}"""


async def _page(browser: Browser, http: str) -> Page:
    page = await browser.new_page()
    await page.goto(f"{http}/healthz")  # same origin as the SDK modules
    return page


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_python_clients_and_pages_come_back_after_a_restart(
    browser: Browser, tmp_path: Path, how: str
) -> None:
    server = ServerProcess(tmp_path)
    await server.start()
    http = f"http://127.0.0.1:{server.port}"
    c = await ceremony(server.url, followers=3, control_every=0.01, start=False)
    try:
        pages = [await _page(browser, http) for _ in range(2)]
        ids = [await p.evaluate(FOLLOW, [server.url, c.leader.id, f"Page {k}"]) for k, p in enumerate(pages)]
        c.start()  # the pages record every control from the first
        await c.until_acked(30)
        if how == "sigterm":
            assert await server.stop() == 0
        else:
            await server.kill()
        await server.start()
        t0 = time.monotonic()
        await all_back(c)
        for page in pages:
            await page.wait_for_function("() => resumed.length > 0 && c.state === 'open'", timeout=30000)
        print(
            f"\n{how}: 4 Python clients and 2 pages resumed {time.monotonic() - t0:.2f} s after the restart"
        )
        for page, me in zip(pages, ids, strict=True):
            (r,) = await page.evaluate("() => resumed")
            assert (r["same"], r["you"], r["epochChanged"]) == (True, me, how == "sigkill")
        assert [s.me for s in c.sessions] == c.ids
        await c.until_acked(len(c.acked) + 30)
        await c.finish()
        check_controls(c, exact=how == "sigterm")
        last = max(c.acked)
        python_log = [(m.seq, m.payload["i"]) for m in c.received[1]]
        for page in pages:
            await page.wait_for_function(f"() => s.seq >= {last}")
            await page.evaluate("() => clearInterval(writer)")
            assert [tuple(x) for x in await page.evaluate("() => log")] == python_log
        await check_state(c, server.url)
        # ... and the pages hold the same document as the Python clients and the server.
        want, version = c.sessions[1].values, c.sessions[1].version
        for page, me in zip(pages, ids, strict=True):
            await page.wait_for_function("(v) => s.version >= v", arg=version)
            assert await page.evaluate("() => s.values") == want
            assert want[f"participants.{me}.beat"] > 0
    finally:
        await c.close()
        await server.cleanup()
