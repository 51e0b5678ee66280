"""Fuzz harnesses: the pure server core in-process (`CoreFuzzer`), and a real server over sockets
(`run_socket_campaign`).

In-process, every frame goes through `Node.receive` + `flush` on a fake clock, and these invariants
are checked per frame (a violation is a *finding*, recorded with the frame; the run goes on):

- `receive`/`flush`/`tick` never raise (`traceback`);
- the fuzzing connection is never closed with 1011 or a code outside `CloseCode`; no bystander
  is closed at all;
- every server frame decodes with `decode_server`; replies are at most what the protocol allows
  (one `error` and nothing else, at most one `joined`/`left`/`ack`/`time`, never `welcome`); every
  error code is an `ErrorCode`;
- a refused frame changed nothing (state values and version, control seq/history, participants,
  leader, settings, sessions, the connection's memberships) and reached no one else;
- nothing reaches the other session's members while the fuzzer is not in it;
- the frame rules of docs/protocol.md ("Frames"): over the size limit → `too_large` (and never
  `too_large` under it); invalid UTF-8 anywhere, a lone-surrogate escape, or more than 32 levels
  of nesting → refused as `malformed` (or `too_large`/`rate_limited`, which are checked first);
- the state document never holds a path that is both a value and the parent of another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from collective_sync.protocol.codec import decode_server
from collective_sync.protocol.errors import CloseCode, ErrorCode
from collective_sync.protocol.messages import Error, Joined
from collective_sync.server.config import ServerConfig
from collective_sync.server.node import Connection, Node

from .frames import SESSION_A, SESSION_B, Corpus, FuzzContext, pool

MAX_DEPTH = 32  # docs/protocol.md, Frames: the message object is level 1
ERROR_CODES: frozenset[str] = frozenset(c.value for c in ErrorCode)
CLOSE_CODES: frozenset[int] = frozenset(int(c) for c in CloseCode)
SINGLE_REPLIES = ("joined", "left", "ack", "time", "error")
# What may answer a frame that breaks a frame-level rule (checked in this order by the server).
FRAME_RULE_CODES = frozenset({"malformed", "too_large", "rate_limited"})

KNOWN_DEFECTS = {
    "traceback:UnicodeDecodeError": "K1 invalid UTF-8 in a string raises UnicodeDecodeError",
    "traceback:RecursionError": "K2 ~1,000-deep nesting raises RecursionError",
    "accepted:utf8": "K3 invalid UTF-8 (in an unknown field) accepted",
    "state_conflict_accepted": "K4 state_set with a value and its child path accepted",
}

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- frame-level oracle (docs/protocol.md, "Frames") -----------------------------------------


def nesting_depth(data: bytes) -> int:
    """Deepest object/array nesting, brackets inside strings not counted."""
    steps = _STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS)  # +1 per opening, -1 per closing
    if not steps:
        return 0
    return max(0, int(np.cumsum(np.frombuffer(steps, np.int8), dtype=np.int64).max()))


def _has_lone_surrogate(data: bytes) -> bool:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return False
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def frame_rule(data: bytes, limit: int) -> str | None:
    """The frame-level rule this frame breaks, if any: size, utf8, depth, surrogate."""
    if len(data) > limit:
        return "size"
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return "utf8"
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and nesting_depth(data) > MAX_DEPTH:
        return "depth"
    if (b"\\ud" in data or b"\\uD" in data) and _has_lone_surrogate(data):
        return "surrogate"
    return None


# --- findings -------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    signature: str
    detail: str
    count: int = 0
    examples: list[bytes] = field(default_factory=list)  # the shortest frames seen

    def add(self, frame: bytes, keep: int = 3) -> None:
        self.count += 1
        if (len(self.examples) < keep or len(frame) < len(self.examples[-1])) and frame not in self.examples:
            self.examples.append(frame)
            self.examples.sort(key=len)
            del self.examples[keep:]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "signature": self.signature,
            "known": KNOWN_DEFECTS.get(self.signature.split("@")[0]),
            "count": self.count,
            "detail": self.detail,
            "examples": [_show(f) for f in self.examples],
        }


def _show(frame: bytes, limit: int = 300) -> dict[str, Any]:
    text = repr(frame[:limit]) + ("…" if len(frame) > limit else "")
    return {"bytes": len(frame), "frame": text}


class Findings:
    def __init__(self) -> None:
        self.by_sig: dict[str, Finding] = {}

    def add(self, kind: str, signature: str, frame: bytes, detail: str = "") -> None:
        f = self.by_sig.get(signature)
        if f is None:
            f = self.by_sig[signature] = Finding(kind, signature, detail)
        f.add(frame)

    def __len__(self) -> int:
        return sum(f.count for f in self.by_sig.values())

    def kinds(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.by_sig.values():
            out[f.kind] += f.count
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in sorted(self.by_sig.values(), key=lambda f: -f.count)]


def exception_signature(exc: BaseException) -> tuple[str, str]:
    """`traceback:Type@file:line` of the innermost frame, and a short traceback."""
    tb = traceback.extract_tb(exc.__traceback__)
    inner = tb[-1] if tb else None
    where = f"{inner.filename.rsplit('/', 1)[-1]}:{inner.lineno}" if inner else "?"
    short = "".join(traceback.format_exception_only(exc)).strip()[:200]
    frames = " <- ".join(f"{t.filename.rsplit('/', 1)[-1]}:{t.lineno} {t.name}" for t in reversed(tb[-6:]))
    return f"traceback:{type(exc).__name__}@{where}", f"{short} | {frames}"


# --- in-process core ------------------------------------------------------------------------


class Sink:
    """A fake transport connection: records frames and the close."""

    __slots__ = ("close_code", "close_reason", "frames")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))

    def close(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason


class FakeClock:
    __slots__ = ("t",)

    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class WorldError(Exception):
    """The world could not be built (the core refused a plain create/join)."""


class World:
    """A node with session A (leader, participant, observer; the fuzzer in it as `role`) and
    session B elsewhere (leader and participant)."""

    def __init__(
        self, config: ServerConfig, clock: FakeClock, role: str, ctx: FuzzContext, rng: random.Random
    ):
        self.node = node = Node(config, clock)
        self.role = role
        self.fuzz_sink = Sink()
        self.a_sinks: list[Sink] = []
        self.b_sinks: list[Sink] = []
        self.fuzz = node.connect(self.fuzz_sink)
        ids: dict[str, Joined] = {}
        if role == "leader":
            ids["me"] = self._send(self.fuzz, self.fuzz_sink, _create("Fuzz", SESSION_A))
        else:
            ids["leader"] = self._member(_create("Lea", SESSION_A), self.a_sinks)
        ids["participant"] = self._member(_join(SESSION_A, "Pia", "participant"), self.a_sinks)
        ids["observer"] = self._member(_join(SESSION_A, "Obi", "observer"), self.a_sinks)
        if role != "leader":
            ids["me"] = self._send(self.fuzz, self.fuzz_sink, _join(SESSION_A, "Fuzz", role))
        self._member(_create("Bea", SESSION_B), self.b_sinks)
        self._member(_join(SESSION_B, "Bob", "participant"), self.b_sinks)
        self.bystanders = self.a_sinks + self.b_sinks
        me = ids["me"]
        leader = ids.get("leader", me)
        ctx.update(
            session=SESSION_A,
            other_session=SESSION_B,
            me=me.you,
            leader=leader.you,
            participant=ids["participant"].you,
            observer=ids["observer"].you,
            token=ids["participant"].token if rng.random() < 0.5 else me.token,
        )
        for s in (self.fuzz_sink, *self.bystanders):
            s.frames.clear()

    def _member(self, frame: bytes, group: list[Sink]) -> Joined:
        sink = Sink()
        conn = self.node.connect(sink)
        group.append(sink)
        return self._send(conn, sink, frame)

    def _send(self, conn: Connection, sink: Sink, frame: bytes) -> Joined:
        self.node.receive(conn, frame)
        self.node.flush()
        for raw in sink.frames:
            for m in decode_server(raw):
                if isinstance(m, Joined):
                    return m
        raise WorldError(f"no joined for {frame!r}: {sink.frames!r}")

    def fingerprint(self) -> tuple[Any, ...]:
        node = self.node
        out: list[Any] = [len(node.sessions), tuple(self.fuzz.sessions.items())]
        for sid in (SESSION_A, SESSION_B):
            s = node.sessions.get(sid)
            if s is None:
                out.append(None)
                continue
            out.append(
                (
                    s.state.version,
                    dict(s.state.values),
                    s.seq,
                    len(s.history),
                    s.history[-1] if s.history else None,
                    s.leader,
                    s.settings,
                    tuple(
                        (p.id, p.name, p.role, p.conn, p.dropped_at, p.meta) for p in s.participants.values()
                    ),
                )
            )
        return tuple(out)


def _create(name: str, sid: str) -> bytes:
    return msgspec.json.encode({"type": "create", "name": name, "settings": {"sessionId": sid}})


def _join(sid: str, name: str, role: str) -> bytes:
    return msgspec.json.encode({"type": "join", "session": sid, "name": name, "role": role})


_FP_PARTS = (
    "sessions",
    "memberships",
    "session A",
    "session B",
)


def _diff(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    names = ["version", "values", "seq", "history", "last control", "leader", "settings", "participants"]
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        if b != a:
            if i >= 2 and b is not None and a is not None:
                parts = [n for n, x, y in zip(names, b, a, strict=True) if x != y]
                return f"{_FP_PARTS[i]}: {','.join(parts)}"
            return _FP_PARTS[i]
    return "?"


@dataclass
class CoreReport:
    frames: int = 0
    seconds: float = 0.0
    worlds: int = 0
    findings: Findings = field(default_factory=Findings)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    silent_drops: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames / self.seconds) if self.seconds else None,
            "worlds": self.worlds,
            "accepted": self.accepted,
            "silent_rate_limit_drops": self.silent_drops,
            "findings_total": len(self.findings),
            "findings_by_kind": dict(self.findings.kinds()),
            "findings": self.findings.to_json(),
            "replies_by_error_code": dict(self.errors.most_common()),
            "closes_by_code": dict(self.closes.most_common()),
            "frames_breaking_frame_rules": dict(self.rules.most_common()),
        }


def fuzz_config(*, default_limits: bool = False, **overrides: Any) -> ServerConfig:
    """Server settings for fuzzing: the rate limiter out of the way unless `default_limits`."""
    settings: dict[str, Any] = {} if default_limits else {"rate_per_second": 1e12, "burst": 10**12}
    return ServerConfig(**{**settings, **overrides})


class CoreFuzzer:
    """Feeds a frame stream to the in-process core and checks the invariants for every frame."""

    def __init__(
        self,
        seed: int,
        config: ServerConfig | None = None,
        *,
        pool_size: int = 2000,
        interval: Callable[[random.Random], float] | None = None,
        rebuild_every: int = 5000,
        tick_every: int = 64,
    ):
        self.config = config or fuzz_config()
        self.rng = random.Random(seed ^ 0x5EED)
        self.clock = FakeClock()
        self.ctx = FuzzContext(now=self.clock.t, max_bytes=self.config.max_message_bytes)
        self.corpus = Corpus(seed, self.ctx, pool(seed, pool_size))
        self.interval = interval or (lambda r: 0.0005)
        self.rebuild_every = rebuild_every
        self.tick_every = tick_every
        self.report = CoreReport()
        self.world = self._build()

    def _build(self) -> World:
        self.report.worlds += 1
        self.clock.t += 10.0  # a new world starts with full token buckets
        role = self.rng.choices(["participant", "leader", "observer"], [5, 4, 1])[0]
        return World(self.config, self.clock, role, self.ctx, self.rng)

    def run(self, frames: int, progress: Callable[[CoreReport], None] | None = None) -> CoreReport:
        report = self.report
        start = time.perf_counter() - report.seconds
        since_build = 0
        for i in range(frames):
            self.clock.t += self.interval(self.rng)
            self.ctx.now = self.clock.t
            data = self.corpus.next()
            rebuild = self.step(data)
            since_build += 1
            if i % self.tick_every == 0:
                try:
                    self.world.node.tick()
                    self.world.node.flush()
                except Exception as exc:
                    sig, detail = exception_signature(exc)
                    report.findings.add("traceback", sig + " (tick)", data, detail)
                    rebuild = True
                self._drain_bystanders(data)
            if rebuild or since_build >= self.rebuild_every:
                self.world = self._build()
                since_build = 0
            if progress is not None and i % 50_000 == 49_999:
                report.seconds = time.perf_counter() - start
                progress(report)
        report.seconds = time.perf_counter() - start
        return report

    def _drain_bystanders(self, data: bytes) -> None:
        for s in self.world.bystanders:
            for raw in s.frames:
                self._decode(raw, data)
            s.frames.clear()

    def _decode(self, raw: bytes, data: bytes) -> list[Any]:
        try:
            return decode_server(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.report.findings.add(
                "undecodable_server_frame",
                f"undecodable_server_frame:{str(exc)[:60]}",
                data,
                f"server sent {raw[:200]!r}",
            )
            return []

    def step(self, data: bytes) -> bool:
        """One frame from the fuzzing connection; True when the world must be rebuilt."""
        w, report, findings = self.world, self.report, self.report.findings
        node, conn, sink = w.node, w.fuzz, w.fuzz_sink
        report.frames += 1
        before = w.fingerprint()
        in_b_before = SESSION_B in conn.sessions
        drops_before = node.stats.errors["rate_limited"]
        try:
            node.receive(conn, data)
            node.flush()
        except Exception as exc:
            sig, detail = exception_signature(exc)
            findings.add("traceback", sig, data, detail)
            return True
        replies: list[Any] = []
        for raw in sink.frames:
            replies.extend(self._decode(raw, data))
        sink.frames.clear()
        kinds = Counter(m.__struct_config__.tag for m in replies)
        errors = [m for m in replies if isinstance(m, Error)]
        for e in errors:
            report.errors[e.code] += 1
            if e.code not in ERROR_CODES:
                findings.add("undocumented_error_code", f"undocumented_error_code:{e.code}", data, e.message)
        if errors and len(replies) > 1:
            findings.add("extra_replies_with_error", "extra_replies_with_error", data, str(dict(kinds)))
        for k in SINGLE_REPLIES:
            if kinds[k] > 1:
                findings.add("too_many_replies", f"too_many_replies:{k}", data, str(dict(kinds)))
        if kinds["welcome"]:
            findings.add("unexpected_reply", "unexpected_reply:welcome", data)
        closed = sink.close_code
        if closed is not None:
            report.closes[str(closed)] += 1
            if closed not in CLOSE_CODES or closed == 1011:
                findings.add("bad_close_code", f"bad_close_code:{closed}", data, sink.close_reason)
        # Bystanders: A's hear nothing of a refused frame; B's hear nothing unless the fuzzer is in B.
        a_heard = any(s.frames for s in w.a_sinks)
        b_heard = any(s.frames for s in w.b_sinks)
        for s in w.bystanders:
            if s.close_code is not None:
                findings.add("bystander_closed", f"bystander_closed:{s.close_code}", data, s.close_reason)
        # Dropped by the rate limiter after it told the sender once: silent, and changes nothing.
        silent = not errors and node.stats.errors["rate_limited"] != drops_before
        if silent:
            report.silent_drops += 1
        refused = bool(errors) or silent
        if refused or closed is not None:
            after = w.fingerprint()
            if refused and after != before:
                code = errors[0].code if errors else "silent_drop"
                where = _diff(before, after)
                findings.add("refused_frame_changed_state", f"refused_changed:{code}:{where}", data, where)
            if refused and a_heard:
                code = errors[0].code if errors else "silent_drop"
                findings.add("refused_frame_broadcast", f"refused_broadcast:{code}", data)
        if b_heard and not in_b_before and SESSION_B not in conn.sessions:
            findings.add("leak_to_other_session", "leak_to_other_session", data)
        if a_heard or b_heard:
            self._drain_bystanders(data)
        if not refused and closed is None:
            report.accepted += 1
        if not silent:
            self._check_frame_rules(data, errors, closed)
        if kinds["state"] or a_heard:
            self._check_state_doc(data)
        if closed is not None:
            return True
        return SESSION_A not in conn.sessions and not self._rejoin()

    def _rejoin(self) -> bool:
        """The fuzzer left session A: join it again on the same connection (its token bucket and
        other sessions stay, which is what lets a flood build up); False if that is refused."""
        w = self.world
        try:
            joined = w._send(w.fuzz, w.fuzz_sink, _join(SESSION_A, "Fuzz", "participant"))
        except (WorldError, msgspec.DecodeError, msgspec.ValidationError):
            return False
        finally:
            w.fuzz_sink.frames.clear()
            self._drain_bystanders(b"(rejoin)")
        self.ctx.update(me=joined.you)
        return True

    def _check_frame_rules(self, data: bytes, errors: list[Error], closed: int | None) -> None:
        findings = self.report.findings
        codes = {e.code for e in errors}
        limit = self.config.max_message_bytes
        if "too_large" in codes and len(data) <= limit:
            findings.add("too_large_under_limit", "too_large_under_limit", data)
        rule = frame_rule(data, limit)
        if rule is None:
            return
        self.report.rules[rule] += 1
        if closed is not None:
            return
        if not errors:
            findings.add("frame_rule_not_enforced", f"accepted:{rule}", data, f"frame breaks rule {rule!r}")
        elif not codes <= FRAME_RULE_CODES or (rule == "size" and codes == {"malformed"}):
            findings.add("frame_rule_wrong_code", f"wrong_code:{rule}:{sorted(codes)}", data)

    def _check_state_doc(self, data: bytes) -> None:
        """No path is both a value and the parent of another path."""
        session = self.world.node.sessions.get(SESSION_A)
        if session is None:
            return
        values = session.state.values
        for path in values:
            parts = path.split(".")
            for i in range(1, len(parts)):
                if ".".join(parts[:i]) in values:
                    self.report.findings.add(
                        "state_conflict_accepted", "state_conflict_accepted", data, f"{path!r} under a value"
                    )
                    return


def run_core(
    seed: int,
    frames: int,
    *,
    default_limits: bool = False,
    pool_size: int = 2000,
    progress: Callable[[CoreReport], None] | None = None,
) -> CoreReport:
    """A seeded in-process campaign. At default limits, frames come in bursts with pauses
    (about 200/s on average), so the rate limiter and the 1008 flood close take part."""
    if default_limits:
        fuzzer = CoreFuzzer(
            seed,
            fuzz_config(default_limits=True),
            pool_size=pool_size,
            interval=lambda r: 0.0 if r.random() < 0.995 else r.expovariate(1.0),  # bursts, then pauses
        )
    else:
        fuzzer = CoreFuzzer(seed, pool_size=pool_size)
    return fuzzer.run(frames, progress)


# --- a real server over sockets ---------------------------------------------------------------


class _RawClient(WSListener):
    """A raw WebSocket client: records every message and the close code."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.undecodable: list[bytes] = []
        self.close_code: int | None = None
        self.transport: WSTransport | None = None
        self.changed = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            raw = frame.get_payload_as_bytes()
            try:
                self.messages.extend(decode_server(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.undecodable.append(raw)
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            with contextlib.suppress(Exception):
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        self.changed.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.close_code is None:
            self.close_code = -1  # connection ended without a close frame
        self.changed.set()

    def send(self, data: bytes, binary: bool = False) -> None:
        t = self.transport
        if t is not None and self.close_code is None and not t.is_disconnected:
            t.send(WSMsgType.BINARY if binary else WSMsgType.TEXT, data)

    async def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return True


async def _connect(url: str) -> _RawClient:
    client = _RawClient()
    try:
        await picows.ws_connect(
            lambda: client, url, max_frame_size=64 * 1024 * 1024, websocket_handshake_timeout=15
        )
    except TimeoutError as exc:
        raise WorldError(f"handshake with {url} timed out") from exc
    return client


@dataclass
class SocketReport:
    frames: int = 0
    seconds: float = 0.0
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    findings: Findings = field(default_factory=Findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames / self.seconds) if self.seconds else None,
            "connections": self.connections,
            "findings_total": len(self.findings),
            "findings_by_kind": dict(self.findings.kinds()),
            "findings": self.findings.to_json(),
            "replies_by_error_code": dict(self.errors.most_common()),
            "closes_by_code": dict(self.closes.most_common()),
        }


_SYNC_RID = 2**52  # marker rids (fuzz frames rarely use rids this large)


async def _socket_worker(
    url: str,
    seed: int,
    frames: int,
    window: int,
    report: SocketReport,
    prefix: str,
    max_bytes: int,
    templates: list[bytes],
) -> None:
    """One fuzzing connection in its own pair of sessions; reconnects after a close."""
    rng = random.Random(seed)
    ctx = FuzzContext(session=f"{prefix}-A", other_session=f"{prefix}-B", max_bytes=max_bytes)
    stream = Corpus(seed, ctx, templates)
    sent = 0
    generation = 0
    while sent < frames:
        generation += 1
        ctx.update(session=f"{prefix}-A{generation}", other_session=f"{prefix}-B{generation}")
        try:
            world = await _socket_world(url, ctx, rng)
        except WorldError as exc:  # the server did not answer a plain create/join in time
            report.findings.add("no_reply", "socket:world_setup_no_reply", b"", str(exc)[:300])
            return
        fuzz = world[0]
        report.connections += len(world)
        sync = _SYNC_RID
        while sent < frames and fuzz.close_code is None:
            batch = []
            for _ in range(min(window, frames - sent)):
                ctx.now = time.time()
                data = stream.next()
                batch.append(data)
                fuzz.send(data, binary=rng.random() < 0.1)
            sent += len(batch)
            report.frames += len(batch)
            sync += 1
            fuzz.send(msgspec.json.encode({"type": "leave", "session": "zz-sync", "rid": sync}))
            marker = sync

            def synced(c: _RawClient = fuzz, m: int = marker) -> bool:
                return c.close_code is not None or any(
                    isinstance(x, Error) and x.rid == m for x in reversed(c.messages)
                )

            if not await fuzz.wait_for(synced, 30.0):
                report.findings.add(
                    "no_reply", "socket:no_reply_within_30s", batch[-1], "server stopped answering"
                )
                return
            _account(fuzz, batch, report)
        if fuzz.close_code is not None:
            report.closes[str(fuzz.close_code)] += 1
            if fuzz.close_code not in CLOSE_CODES or fuzz.close_code == 1011:
                report.findings.add("bad_close_code", f"bad_close_code:{fuzz.close_code}", b"")
        for c in world:
            for raw in c.undecodable:
                report.findings.add("undecodable_server_frame", "undecodable_server_frame", raw[:300])
            if c is not fuzz and c.close_code is not None:
                report.findings.add("bystander_closed", f"bystander_closed:{c.close_code}", b"")
            if c.transport is not None:
                c.transport.disconnect()


def _account(fuzz: _RawClient, batch: list[bytes], report: SocketReport) -> None:
    for m in fuzz.messages:
        if isinstance(m, Error):
            if m.rid is not None and m.rid > _SYNC_RID:
                continue
            report.errors[m.code] += 1
            if m.code not in ERROR_CODES:
                report.findings.add(
                    "undocumented_error_code", f"undocumented_error_code:{m.code}", batch[0], m.message
                )
    fuzz.messages.clear()


async def _socket_world(url: str, ctx: FuzzContext, rng: random.Random) -> list[_RawClient]:
    """The fuzzing connection (in A, as participant or leader), a bystander in A, two in B."""
    clients = [await _connect(url) for _ in range(4)]
    fuzz, bystander, b_leader, b_member = clients
    leader_first = rng.random() < 0.5
    steps = [
        (fuzz if leader_first else bystander, _create("L", ctx.session)),
        (bystander if leader_first else fuzz, _join(ctx.session, "P", "participant")),
        (b_leader, _create("B", ctx.other_session)),
        (b_member, _join(ctx.other_session, "Q", "participant")),
    ]
    joined: dict[int, Joined] = {}
    for client, frame in steps:
        client.send(frame)
        ok = await client.wait_for(lambda c=client: any(isinstance(m, Joined) for m in c.messages), 10)
        if not ok:
            raise WorldError(f"no joined for {frame!r}: {client.messages!r} close={client.close_code}")
        joined[id(client)] = next(m for m in client.messages if isinstance(m, Joined))
    me = joined[id(fuzz)]
    other = joined[id(bystander)]
    ctx.update(
        me=me.you,
        leader=(me if leader_first else other).you,
        participant=other.you,
        observer=other.you,
        token=other.token,
    )
    for c in clients:
        c.messages.clear()
    return clients


async def run_socket_campaign(
    url: str,
    seed: int,
    frames: int,
    *,
    connections: int = 4,
    window: int = 32,
    max_bytes: int = 64 * 1024,
    pool_size: int = 2000,
) -> SocketReport:
    """`frames` fuzz frames over `connections` real WebSocket connections to `url`."""
    report = SocketReport()
    templates = pool(seed, pool_size)  # generated before any connection is open (it blocks)
    start = time.perf_counter()
    per = -(-frames // connections)
    await asyncio.gather(
        *(
            _socket_worker(
                url,
                seed * 1000 + i,
                min(per, frames - i * per),
                window,
                report,
                f"fz{seed}x{i}",
                max_bytes,
                templates,
            )
            for i in range(connections)
            if frames - i * per > 0
        )
    )
    report.seconds = time.perf_counter() - start
    return report


async def normal_client_works(url: str, timeout: float = 10.0) -> bool:
    """A plain client can still create a session, write state and read its ack."""
    try:
        c = await _connect(url)
    except WorldError:
        return False
    try:
        c.send(_create("after", f"after-{random.randrange(10**9)}"))
        if not await c.wait_for(lambda: any(isinstance(m, Joined) for m in c.messages), timeout):
            return False
        sid = next(m for m in c.messages if isinstance(m, Joined)).session
        c.send(
            msgspec.json.encode(
                {"type": "state_set", "session": sid, "at": time.time(), "set": {"geometry.R": 1.0}, "rid": 7}
            )
        )
        return await c.wait_for(lambda: any(getattr(m, "rid", None) == 7 for m in c.messages), timeout)
    finally:
        if c.transport is not None:
            c.transport.disconnect()
