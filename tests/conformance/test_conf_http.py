"""docs/protocol.md, **HTTP**, with urllib and bare TCP (no project code).

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import re

import pytest
from confwire import TcpWs, healthz, http, member, metric
from rawws import Raw, session_with

SECURITY = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def test_healthz_counts_sessions_and_connections(server) -> None:
    assert await healthz(server.http) == {"status": "ok", "sessions": 0, "connections": 0}
    _lea, _sid, _ = await session_with(server.url)
    await Raw.open(server.url)
    resp = await http(server.http, "/healthz")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"status": "ok", "sessions": 1, "connections": 2}


async def test_metrics_lists_the_documented_names(server) -> None:
    lea, _sid, _ = await session_with(server.url)
    await lea.send({"type": "nope"})
    await lea.error()
    resp = await http(server.http, "/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = resp.body.decode()
    for name in (
        "collective_sync_connections",
        "collective_sync_sessions",
        "collective_sync_participants",
        "collective_sync_frames_in_total",
        "collective_sync_frames_out_total",
        "collective_sync_bytes_out_total",
        "collective_sync_deliveries_total",
        "collective_sync_coalesced_drops_total",
        "collective_sync_slow_consumer_closes_total",
        "collective_sync_store_commits_total",
        "collective_sync_store_commit_seconds_total",
        "collective_sync_held_for_disk",
        "collective_sync_admission_waiting",
        "collective_sync_admitted_total",
        "collective_sync_fanout_seconds",
    ):
        assert metric(text, name) is not None, name
    assert metric(text, "collective_sync_admission_waiting") == 0
    assert metric(text, "collective_sync_admitted_total") >= 2  # lea's upgrade and create
    assert metric(text, "collective_sync_connections") == 1
    assert metric(text, "collective_sync_sessions") == 1
    assert metric(text, "collective_sync_participants") == 1
    assert metric(text, "collective_sync_messages_in_total", 'type="create"') == 1
    assert metric(text, "collective_sync_errors_total", 'code="unknown_type"') == 1
    assert re.search(r"^process_\w+ ", text, re.MULTILINE), "process metrics"


async def test_api_sessions_lists_public_sessions_with_someone_there(server) -> None:
    pub = await Raw.open(server.url)
    joined = await pub.request(
        {"type": "create", "name": "Lea", "settings": {"public": True, "ceremonyType": "dawn"}}, rid=1
    )
    await member(server.url, joined["session"])
    await session_with(server.url)  # private
    vacant = await Raw.open(server.url)
    j2 = await vacant.request({"type": "create", "name": "V", "settings": {"public": True}}, rid=1)
    await member(server.url, j2["session"], "Obs", "observer")
    await vacant.request({"type": "leave", "session": j2["session"]}, rid=2)
    # A public session whose people all dropped or left: its creator's connection closed (in its
    # grace, so the session has not ended), then the one who saw that go left.
    dropped = await Raw.open(server.url)
    j3 = await dropped.request({"type": "create", "name": "D", "settings": {"public": True}}, rid=1)
    witness, _ = await member(server.url, j3["session"], "W", "observer")
    await dropped.close()
    update = await witness.expect("presence")
    assert update["updates"][0]["id"] == j3["you"] and update["updates"][0]["connected"] is False
    await witness.request({"type": "leave", "session": j3["session"]}, rid=2)
    resp = await http(server.http, "/api/sessions")
    assert resp.status == 200
    sessions = {s["id"]: s for s in resp.json()["sessions"]}
    assert set(sessions) == {joined["session"], j2["session"]}  # not j3's
    assert j3["session"] not in sessions
    s = sessions[joined["session"]]
    assert s["participants"] == 2
    assert s["leader"] == {"id": joined["you"], "name": "Lea"}
    assert s["ceremonyType"] == "dawn"
    assert abs(s["createdAt"] - pub.welcome["time"]) < 5
    v = sessions[j2["session"]]
    assert v["leader"] is None and "ceremonyType" not in v and v["participants"] == 1


@pytest.mark.parametrize("t0", ["0", "-12.5e-3", "1700000000.25", "1E3", "-0"])
async def test_api_time_accepts_json_numbers(server, t0: str) -> None:
    resp = await http(server.http, f"/api/time?t0={t0}")
    assert resp.status == 200
    body = resp.json()
    assert body["t0"] == float(t0) and body["t1"] <= body["t2"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?t0=",
        "?t0=1_000",
        "?t0=inf",
        "?t0=nan",
        "?t0=1e999",
        "?t0=1&t0=2",
        "?t0=0x10",
        "?t0=+1",
        "?t0=.5",
        "?x=1",
    ],
)
async def test_api_time_refuses_anything_else(server, query: str) -> None:
    resp = await http(server.http, "/api/time" + query)
    assert resp.status == 400, query
    assert resp.json()["error"] == "invalid_message"


async def test_unknown_path_is_404(server) -> None:
    for path in ("/nowhere", "/api/nothing", "/healthz/x"):
        resp = await http(server.http, path)
        assert resp.status == 404, path
        body = resp.json()
        assert body["error"] == "not_found" and isinstance(body["message"], str)


@pytest.mark.parametrize(
    "path", ["/healthz", "/metrics", "/api/sessions", "/api/time?t0=1", "/api/time", "/nowhere"]
)
async def test_head_answers_like_get_without_a_body(server, path: str) -> None:
    get = await http(server.http, path)
    head = await http(server.http, path, "HEAD")
    assert (head.status, head.body) == (get.status, b"")
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    if path.startswith("/api/time?") or path == "/metrics":
        assert int(head.headers["Content-Length"]) > 0  # body length varies between requests
    else:
        assert int(head.headers["Content-Length"]) == len(get.body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_get_405(server, method: str) -> None:
    resp = await http(server.http, "/api/time?t0=1", method)
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"


def check_security_headers(headers: dict[str, str], where: str) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, value in SECURITY.items():
        assert lowered.get(name.lower()) == value, (where, name, lowered.get(name.lower()))
    csp = {
        d.split()[0]: d.split()[1:]
        for d in lowered.get("content-security-policy", "").split(";")
        if d.strip()
    }
    assert csp.get("default-src") == ["'self'"], where
    for directive in ("script-src", "style-src", "connect-src"):
        assert csp.get(directive, csp.get("default-src")) == ["'self'"], (where, directive)
    assert csp.get("object-src") == ["'none'"], where
    assert csp.get("base-uri") == ["'none'"], where
    assert csp.get("frame-ancestors") == ["'none'"], where


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/sessions"),
        ("GET", "/api/time?t0=1"),
        ("GET", "/api/time?t0=x"),
        ("GET", "/nowhere"),
        ("GET", "/"),
        ("HEAD", "/healthz"),
        ("HEAD", "/nowhere"),
        ("HEAD", "/ws"),
        ("GET", "/ws"),
        ("POST", "/healthz"),
    ],
)
async def test_every_response_carries_the_security_headers(server, method: str, path: str) -> None:
    resp = await http(server.http, path, method)
    check_security_headers(resp.headers, f"{method} {path} -> {resp.status}")


async def test_websocket_upgrade_response_carries_the_security_headers(server) -> None:
    ws = await TcpWs.open(server.port)
    head = ws.response_head.decode("latin-1").split("\r\n")[1:]
    headers = dict(line.split(": ", 1) for line in head if ": " in line)
    ws.close()
    check_security_headers(headers, "101 upgrade")
