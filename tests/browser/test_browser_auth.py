"""The browser SDK on a server that requires the app's JWTs (real Chromium, real server)."""

from __future__ import annotations

import time

import jwt
import pytest
from support import make_config

from collective_sync.auth import AuthConfig
from collective_sync.server.config import ServerConfig

SECRET = "browser-test-secret-of-at-least-32-bytes"


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config()
    config.auth = AuthConfig(secret=SECRET)
    return config


def token(user: str, lifetime: float = 3600) -> str:
    claims = {"sub": user, "exp": time.time() + lifetime, "user_metadata": {"display_name": user.title()}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


CONNECT = """async ([url, tok]) => {
  const { Client } = await import('/sdk/client.js');
  try {
    const c = await Client.connect(url, { token: tok ?? undefined, storage: false });
    const s = await c.create('typed');
    return { ok: true, name: s.participants.get(s.me).name, state: c.state };
  } catch (e) { return { ok: false, code: e.code ?? String(e) }; }
}"""


async def test_the_browser_sdk_authenticates_and_is_refused_without_a_token(server, browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")  # same origin as the SDK modules
    assert await page.evaluate(CONNECT, [server.url, token("ana")]) == {
        "ok": True,
        "name": "Ana",
        "state": "open",
    }
    assert await page.evaluate(CONNECT, [server.url, None]) == {"ok": False, "code": "unauthorized"}
    expired = jwt.encode({"sub": "x", "exp": time.time() - 60}, SECRET, algorithm="HS256")
    assert await page.evaluate(CONNECT, [server.url, expired]) == {"ok": False, "code": "token_expired"}


async def test_a_token_function_is_called_again_to_refresh_before_exp(server, browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{server.http}/healthz")
    await page.expose_function("freshToken", lambda: token("ben", lifetime=2))
    await page.evaluate(
        """async (url) => {
          const { Client } = await import('/sdk/client.js');
          window.calls = 0; window.lost = [];
          const token = async () => { calls++; return await freshToken(); };
          window.c = await Client.connect(url, { token, storage: false });
          c.addEventListener('lost', (e) => lost.push(e.detail.code));
        }""",
        server.url,
    )
    # Each token lives 2 s: the page keeps its one connection by refreshing it in time (by the
    # fourth token, 3 s on, the first one has been expired for a second).
    await page.wait_for_function("() => calls >= 4", timeout=15000)
    assert await page.evaluate("() => [c.state, lost]") == ["open", []]


OPEN = """(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onmessage = (e) => { resolve(JSON.parse(e.data).type); ws.close(); };
  ws.onclose = (e) => resolve(`closed ${e.code}`);
})"""


async def test_a_page_of_another_origin_cannot_open_a_socket_unless_allowed(server, browser) -> None:
    """Cross-site WebSocket hijacking, in a real browser: a page of another site (a plain HTTP
    server on loopback, no CSP of ours) opening a socket to this server is refused (403) unless
    the server allows that origin."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>elsewhere</title>")

        def log_message(self, *args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{site.server_address[1]}"
    node = server.server.node
    try:
        page = await browser.new_page()
        await page.goto(f"{origin}/")
        assert await page.evaluate(OPEN, server.url) == "closed 1006"  # the upgrade got a 403
        node.config.allowed_origins = (origin,)
        assert await page.evaluate(OPEN, server.url) == "welcome"
    finally:
        site.shutdown()
