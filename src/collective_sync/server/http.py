"""The small HTTP API served beside the WebSocket endpoint (GET, JSON or Prometheus text; POST and
OPTIONS only for the Supabase-compatible `get-server-time` function)."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import make_registry
from .node import Node
from .static import StaticFiles

JSON = "application/json"
# The demo loads only its own scripts, styles and worklet, and talks only to this origin; no page
# of ours may be framed (clickjacking) and invite links (session ids) are not sent as referrers.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# A JSON number as RFC 8259 writes it (what `float()` takes beyond that, e.g. "1_0", "inf", is refused).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(slots=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] | None = None  # beyond the base ones


SERVER_TIME_PATH = "/functions/v1/get-server-time"  # where supabase-js' functions.invoke() calls
# supabase-js calls functions from the app's own origin: any origin may read the time (no cookies).
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type, x-region",
    "Access-Control-Max-Age": "86400",
}


class _SessionInfo(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    participants: int
    leader: dict[str, str] | None
    created_at: float
    ceremony_type: str | None = None


BASE_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}  # on every HTTP response


def response_headers(resp: HttpResponse) -> dict[str, str]:
    """Headers of a response from this API (GET and HEAD alike)."""
    return {"Content-Type": resp.content_type, **BASE_HEADERS, **(resp.headers or {})}


def _json(status: int, obj: object) -> HttpResponse:
    return HttpResponse(status, JSON, msgspec.json.encode(obj))


class HttpApi:
    def __init__(self, node: Node):
        self.node = node
        self.registry = make_registry(node)
        self.static = StaticFiles()

    def handle(self, path: str, query: str, authorization: str | None = None) -> HttpResponse:
        t1 = self.node.clock()
        if path == "/healthz":
            return _json(
                200,
                {"status": "ok", "sessions": len(self.node.sessions), "connections": len(self.node.conns)},
            )
        if path == "/metrics":
            refused = self._metrics_refused(authorization)
            if refused is not None:
                return refused
            return HttpResponse(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        if path == "/api/sessions":
            return _json(200, {"sessions": self._public_sessions()})
        if path == "/api/time":
            return self._time(query, t1)
        if path == SERVER_TIME_PATH:
            return self._server_time()
        static = self.static.get(path)
        if static is not None:
            return HttpResponse(200, static[0], static[1])
        return _json(404, {"error": "not_found", "message": f"no resource at {path}"})

    def other(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Methods other than GET/HEAD (tcp.RequestGate): only POST and OPTIONS of the
        `get-server-time` function (its CORS preflight); the request body, if any, is not read
        (the function takes no arguments). Anything else: 405 with what the path allows."""
        path = target.partition("?")[0]
        if path != SERVER_TIME_PATH or method not in ("POST", "OPTIONS"):
            allow = "GET, HEAD, POST, OPTIONS" if path == SERVER_TIME_PATH else "GET, HEAD"
            resp = _json(405, {"error": "method_not_allowed", "message": f"{method} is not served at {path}"})
            return resp.status, {**response_headers(resp), "Allow": allow}, resp.body
        if method == "OPTIONS":
            return 204, dict(CORS_HEADERS), b""
        resp = self._server_time()
        return resp.status, response_headers(resp), resp.body

    def _server_time(self) -> HttpResponse:
        """The app's `get-server-time` edge function: `serverTime` in milliseconds of network time
        (what it adds to Date.now() as its offset). The native `/api/time` exchange is better:
        it gives the server's receive and send times, so the client can split the round trip."""
        return HttpResponse(
            200, JSON, msgspec.json.encode({"serverTime": self.node.clock() * 1000.0}), CORS_HEADERS
        )

    def _metrics_refused(self, authorization: str | None) -> HttpResponse | None:
        """/metrics takes `Authorization: Bearer <--metrics-token>` when one is set; without one
        it is open only on a loopback listener (what it tells is for operators)."""
        config = self.node.config
        expected = config.metrics_token
        if expected is None:
            if config.loopback:
                return None
            return _json(403, {"error": "forbidden", "message": "set --metrics-token to read metrics"})
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        if not secrets.compare_digest(given, expected.encode()):
            return _json(401, {"error": "unauthorized", "message": "metrics need Authorization: Bearer"})
        return None

    def _public_sessions(self) -> list[_SessionInfo]:
        out = []
        for s in self.node.sessions.values():
            # Public, and somebody there: a session whose people all dropped (it waits out their
            # grace before ending) is not one to join.
            if not s.settings.public or not s.count().connected:
                continue
            leader = s.participants.get(s.leader) if s.leader else None
            out.append(
                _SessionInfo(
                    id=s.id,
                    participants=len(s.participants),
                    created_at=s.created_at,
                    leader={"id": leader.id, "name": leader.name} if leader else None,
                    ceremony_type=s.settings.ceremony_type,
                )
            )
        return out

    def _time(self, query: str, t1: float) -> HttpResponse:
        """NTP-style exchange over HTTP: echoes the client's t0, with receive and send times."""
        values = parse_qs(query, keep_blank_values=True).get("t0", [])
        t0 = float(values[0]) if len(values) == 1 and _NUMBER.fullmatch(values[0]) else math.nan
        if not math.isfinite(t0):
            return _json(400, {"error": "invalid_message", "message": "t0 must be one finite JSON number"})
        return _json(200, {"t0": t0, "t1": t1, "t2": self.node.clock()})
