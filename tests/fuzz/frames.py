"""Fuzz frames for the client protocol: structure-aware valid frames plus byte-level mutations.

No I/O. Two layers:

- `valid_frames(seed, n)`: hypothesis generates valid client frames from the msgspec schemas in
  `collective_sync.protocol.messages` (the `ClientMessage` union), by walking
  `msgspec.inspect.type_info` (hypothesis-jsonschema's `from_schema` cannot draw objects with the
  installed hypothesis: `AttributeError: 'many' object has no attribute 'more'`). Values that
  must match the harness's world to get past `not_in_session` are placeholders (`@SID@`, `@ME@`,
  `"@NOW-0.5@"` …) filled in per frame by `FuzzContext.fill`, so one pre-generated pool serves
  every world the harness builds.
- `mutate(frame, rng, ...)`: cheap byte-level damage with `random.Random` (bad UTF-8 inside known
  and unknown fields, lone-surrogate escapes, deep nesting, huge and special numbers, duplicate
  keys, giant strings around the size limit, truncation, bit flips, splicing, BOM, wrong types …).

`corpus(seed, n, ctx)` mixes both deterministically.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from collective_sync.protocol.messages import VALIDATED_CONTROL_EVENTS, ClientMessage

Strategy = st.SearchStrategy[Any]

# --- the harness's world, as seen by frames -------------------------------------------------

SESSION_A = "fuzz-A"  # the session the fuzzing connection is a member of
SESSION_B = "fuzz-B"  # another session whose members must never hear of the fuzzer

_PLACEHOLDER = re.compile(rb"@(SID2|SID|ME|LEADER|PART|OBS|TOKEN)@")
_NOW = re.compile(rb'"@NOW([-+][0-9.]+)?@"')


@dataclass
class FuzzContext:
    """Values of the current world. The harness updates it in place when it rebuilds the world."""

    session: str = SESSION_A
    other_session: str = SESSION_B
    me: str = "p00000000"  # the fuzzing connection's participant id in `session`
    leader: str = "p00000001"
    participant: str = "p00000002"
    observer: str = "p00000003"
    token: str = "token"  # a resume token of a participant of `session`
    now: float = 1.7e9  # server network time
    max_bytes: int = 64 * 1024  # the frame size limit
    _values: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def update(self, **values: Any) -> None:
        for k, v in values.items():
            setattr(self, k, v)
        self._values = {
            b"SID": self.session.encode(),
            b"SID2": self.other_session.encode(),
            b"ME": self.me.encode(),
            b"LEADER": self.leader.encode(),
            b"PART": self.participant.encode(),
            b"OBS": self.observer.encode(),
            b"TOKEN": self.token.encode(),
        }

    def fill(self, template: bytes) -> bytes:
        """The template with this world's ids and the current time in place of placeholders."""
        if b"@" not in template:
            return template
        if not self._values:
            self.update()
        values = self._values
        out = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
        if b"@NOW" in out:
            now = self.now
            out = _NOW.sub(lambda m: repr(now + float(m.group(1) or 0.0)).encode(), out)
        return out


# --- structure-aware generation from the msgspec schemas ------------------------------------

STATE_ROOTS = ("geometry", "oscillators", "polarity")  # leader roots (docs/protocol.md, State)
_SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
_SHORT_SEGMENT = st.sampled_from(["R", "e", "f", "x", "hr", "0", "1", "frequency", "gain", "a-b_c"])

_finite = st.floats(allow_nan=False, allow_infinity=False)
_safe_int = st.integers(-(2**53) + 1, 2**53 - 1)
_edge_text = st.sampled_from(["", "é", "😀", "\u0000", "\uffff", "\U0010ffff", "a" * 64, "a" * 65, "\\", '"'])
_text = st.one_of(st.text(max_size=24), _edge_text)

JSON_VALUES: Strategy = st.recursive(
    st.none() | st.booleans() | _safe_int | _finite | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


# Values near the planned depth limit (32 levels for a whole frame), still valid JSON.
_DEEPISH = st.sampled_from([_nested(d) for d in (5, 28, 29, 30, 31, 32, 33, 40)])
ANY_VALUES: Strategy = st.one_of(JSON_VALUES, _DEEPISH)


def _state_path() -> Strategy:
    """Realistic state paths: leader roots, the own area, others' areas, junk."""
    tail = st.lists(_SHORT_SEGMENT | _SEGMENT, min_size=1, max_size=8)
    root = st.sampled_from(
        [*STATE_ROOTS, "participants.@ME@", "participants.@PART@", "participants", "secrets"]
    )
    realistic = st.builds(lambda r, t: ".".join([r, *t]), root, tail)
    return st.one_of(
        realistic,
        realistic,
        st.sampled_from(["geometry.R", "geometry.e", "geometry.e.f", "participants.@ME@.x"]),
        st.sampled_from(
            ["", ".", "geometry.", "geometry..R", "geometry.R.", "a" * 65, "geometry." + "x." * 8]
        ),
        st.text(max_size=16),
    )


def _state_set_values() -> Strategy:
    """`set` of a state_set: 1…8 paths (sometimes a value/parent conflict inside the message)."""
    plain = st.dictionaries(_state_path(), ANY_VALUES | st.none(), min_size=1, max_size=8)
    conflict = st.builds(
        lambda parent, suffix, first, extra: {
            **({parent: 1, parent + suffix: 2} if first else {parent + suffix: 2, parent: 1}),
            **extra,
        },
        st.sampled_from(["geometry.e", "participants.@ME@.a", "oscillators.0"]),
        st.sampled_from([".f", ".f.g", ".0"]),
        st.booleans(),
        st.dictionaries(_state_path(), JSON_VALUES, max_size=2),
    )
    big = st.integers(200, 300).map(lambda n: {f"geometry.k{i}": i for i in range(n)})
    return st.one_of(plain, plain, plain, conflict, big)


# Field-name hints: where a value must come from the harness's world to reach deep code.
def _hint(name: str, derived: Strategy) -> Strategy:
    if name == "session":
        return st.one_of(st.just("@SID@"), st.just("@SID@"), st.just("@SID@"), st.just("@SID2@"), derived)
    if name == "to":
        return st.one_of(st.sampled_from(["@ME@", "@LEADER@", "@PART@", "@OBS@", "server"]), derived)
    if name == "resume":
        return st.one_of(st.just("@TOKEN@"), derived)
    if name == "at":
        # `"@NOW…@"` (quotes included) becomes a number: the server time plus the offset.
        return st.one_of(
            st.sampled_from(["@NOW@", "@NOW-0.5@", "@NOW+0.2@", "@NOW-29.9@", "@NOW+45@"]), derived
        )
    if name == "last_seq":
        return st.one_of(st.integers(0, 8), derived)
    if name == "set":
        return _state_set_values()
    if name in ("meta", "payload"):
        return st.one_of(derived, st.dictionaries(st.text(max_size=8), ANY_VALUES, max_size=3))
    return derived


def strategy_for(t: mi.Type, name: str = "") -> Strategy:
    """A hypothesis strategy for values of msgspec type `t` (the schema), with world hints."""
    return _hint(name, _derive(t, name))


def _derive(t: mi.Type, name: str) -> Strategy:
    match t:
        case mi.StrType(min_length=lo, max_length=hi, pattern=pattern):
            if pattern is not None:
                return st.from_regex(pattern, fullmatch=True)
            return st.text(min_size=lo or 0, max_size=hi if hi is not None else 40)
        case mi.IntType(ge=ge, gt=gt, le=le, lt=lt):
            lo = ge if ge is not None else (gt + 1 if gt is not None else -(2**63))
            hi = le if le is not None else (lt - 1 if lt is not None else 2**63 - 1)
            return st.one_of(
                st.integers(lo, hi), st.sampled_from([v for v in (lo, hi, lo + 1) if lo <= v <= hi])
            )
        case mi.FloatType(ge=ge, gt=gt, le=le, lt=lt):
            lo = ge if ge is not None else gt
            hi = le if le is not None else lt
            return st.floats(
                min_value=lo,
                max_value=hi,
                exclude_min=gt is not None,
                exclude_max=lt is not None,
                allow_nan=False,
                allow_infinity=False,
            )
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.UnionType(types=types):
            return st.one_of([_derive(x, name) for x in types])
        case mi.DictType(value_type=value_type, min_length=lo, max_length=hi):
            values = ANY_VALUES if isinstance(value_type, mi.AnyType) else _derive(value_type, name)
            return st.dictionaries(st.text(max_size=12), values, min_size=lo or 0, max_size=min(hi or 6, 6))
        case mi.ListType(item_type=item) | mi.VarTupleType(item_type=item):
            return st.lists(_derive(item, name), max_size=4)
        case mi.AnyType():
            return ANY_VALUES
        case mi.StructType():
            return struct_strategy(t)
    raise TypeError(f"no strategy for {t!r}")


def struct_strategy(t: mi.StructType) -> Strategy:
    required = {f.encode_name: strategy_for(f.type, f.name) for f in t.fields if f.required}
    optional = {f.encode_name: strategy_for(f.type, f.name) for f in t.fields if not f.required}
    if t.tag_field is not None:
        required = {t.tag_field: st.just(t.tag), **required}
    base = st.fixed_dictionaries(required, optional=optional)
    names = {f.name for f in t.fields}
    if {"event", "payload"} <= names:  # control: payloads the server validates, from their schemas
        validated = [
            st.fixed_dictionaries({"event": st.just(event), "payload": struct_strategy(mi.type_info(schema))})
            for event, schema in VALIDATED_CONTROL_EVENTS.items()
        ]
        return st.one_of(base, st.tuples(base, st.one_of(validated)).map(lambda p: {**p[0], **p[1]}))
    return base


def message_strategy() -> Strategy:
    """Every client message type, derived from the `ClientMessage` union."""
    info = mi.type_info(ClientMessage)
    types = info.types if isinstance(info, mi.UnionType) else (info,)
    return st.one_of([struct_strategy(t) for t in types if isinstance(t, mi.StructType)])


_encoder = msgspec.json.Encoder()


def encode_template(msg: dict[str, Any]) -> bytes:
    return _encoder.encode(msg)


def valid_frames(seed_value: int, n: int) -> list[bytes]:
    """`n` (at most; hypothesis may stop early) valid frame templates, deterministic per seed."""
    out: list[bytes] = []

    @seed(seed_value)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(message_strategy())
    def collect(msg: dict[str, Any]) -> None:
        out.append(encode_template(msg))

    collect()
    return out


# --- byte-level mutation --------------------------------------------------------------------

BAD_UTF8: tuple[bytes, ...] = (
    b"\xff\xfe",
    b"\xc3\x28",  # invalid continuation
    b"\xed\xa0\x80",  # encoded surrogate U+D800
    b"\xed\xbf\xbf",  # encoded surrogate U+DFFF
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong
    b"\xf0\x80\x80\xaf",  # overlong
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\x80",  # lone continuation
    b"\xe2\x82",  # truncated 3-byte char
    b"\xf0\x9f\x98",  # truncated 4-byte char
    b"\xfe",
    b"\xc1\xbf",
)
SURROGATE_ESCAPES: tuple[bytes, ...] = (
    rb"\ud800",
    rb"\udc00",
    rb"\udbff",
    rb"\ud83d\ude00",  # a valid pair
    rb"\ude00\ud83d",  # reversed pair
    rb"\ud800\u0041",
    rb"\u0000",
    rb"\uffff",
    rb"\ud800\ud800",
)
SPECIAL_NUMBERS: tuple[bytes, ...] = (
    b"1e999",
    b"-1e999",
    str(10**400).encode(),
    str(-(10**400)).encode(),
    str(2**64).encode(),
    str(2**63).encode(),
    str(-(2**63) - 1).encode(),
    str(2**53).encode(),
    str(2**53 - 1).encode(),
    b"-0.0",
    b"-0",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"1e-400",
    b"4.9e-324",
    b"1.7976931348623157e308",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"0x10",
    b"1e",
    b"-",
    b"1" * 5000,
    b"0." + b"0" * 3000 + b"1",
)
WRONG_TYPES: tuple[bytes, ...] = (
    b"1",
    b"-1",
    b"1.5",
    b"true",
    b"false",
    b"null",
    b'""',
    b'"x"',
    b"[]",
    b"{}",
    b"[1]",
    b'{"a":1}',
    b'"participant"',
    b'"@SID@"',
)
NESTING_DEPTHS: tuple[int, ...] = (31, 32, 33, 34, 64, 100, 1000, 5000, 100_000)
_TYPES = (
    b"create",
    b"join",
    b"leave",
    b"meta",
    b"handover",
    b"control",
    b"state_set",
    b"time",
    b"welcome",
    b"x",
)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NUMBER = re.compile(rb"(?<=[:\[,])-?[0-9][0-9.eE+-]*")
_VALUE_KEYS = (b'"meta"', b'"payload"', b'"set"', b'"settings"')
_NUMBER_KEYS = (b'"at"', b'"t0"', b'"rid"', b'"lastSeq"', b'"playoutDelay"')
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Work:
    """A frame being mutated: top-level fields (key JSON, value JSON) while the frame is still an
    object we built, raw bytes once a byte-level mutation has damaged it."""

    __slots__ = ("parts", "raw")

    def __init__(self, frame: bytes):
        self.raw: bytes | None = None
        self.parts: list[list[bytes]] | None = None
        try:
            obj = _decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            self.parts = [[_encode(k), _encode(v)] for k, v in obj.items()]
        else:
            self.raw = frame

    def data(self) -> bytes:
        if self.raw is None:
            assert self.parts is not None
            self.raw = b"{" + b",".join(k + b":" + v for k, v in self.parts) + b"}"
        return self.raw

    def set_raw(self, raw: bytes) -> None:
        self.raw, self.parts = raw, None

    def field(self, rng: random.Random, keys: Sequence[bytes] = ()) -> list[bytes] | None:
        """A top-level field (preferring `keys`); None once the frame is raw bytes."""
        parts = self.parts
        if not parts:
            return None
        if keys:
            preferred = [p for p in parts if p[0] in keys]
            if preferred:
                return rng.choice(preferred)
        return rng.choice(parts)

    def add(self, rng: random.Random, value: bytes, key: bytes | None = None) -> None:
        """An extra field (`key` JSON, default an unknown name) at a random position."""
        key = key if key is not None else b'"x' + str(rng.randrange(1000)).encode() + b'"'
        if self.parts is not None:
            self.parts.insert(rng.randint(0, len(self.parts)), [key, value])
            self.raw = None
            return
        data = self.data()
        i = data.find(b"{")
        if i < 0:
            self.set_raw(data + key + b":" + value)
        else:
            sep = b"" if data[i + 1 : i + 2] in (b"}", b"") else b","
            self.set_raw(data[: i + 1] + key + b":" + value + sep + data[i + 1 :])

    def replace(self, rng: random.Random, value: bytes, keys: Sequence[bytes] = ()) -> None:
        f = self.field(rng, keys)
        if f is None:
            self.add(rng, value)
        else:
            f[1] = value
            self.raw = None

    def in_string(self, rng: random.Random, insert: bytes, whole: float = 0.3) -> None:
        """Put `insert` inside a string literal (a key or a value, at any depth)."""
        f = self.field(rng)
        if f is not None and rng.random() < 0.85:
            target = f[1] if rng.random() < 0.85 else f[0]
            new = _in_string(target, rng, insert, whole)
            if new is not None:
                if target is f[1]:
                    f[1] = new
                else:
                    f[0] = new
                self.raw = None
                return
        data = self.data()
        new = _in_string(data, rng, insert, whole)
        if new is None:
            self.add(rng, b'"' + insert + b'"')
        else:
            self.set_raw(new)


def _in_string(data: bytes, rng: random.Random, insert: bytes, whole: float) -> bytes | None:
    spans = [m.span() for m in _STRING.finditer(data, 0, 20_000)]
    if not spans:
        return None
    s, e = rng.choice(spans)
    if rng.random() < whole:
        return data[: s + 1] + insert + data[e - 1 :]
    at = rng.randint(s + 1, e - 1)
    return data[:at] + insert + data[at:]


@functools.cache
def _nest(depth: int, kind: int) -> bytes:
    if kind == 0:
        return b"[" * depth + b"1" + b"]" * depth
    if kind == 1:
        return b'{"a":' * depth + b"1" + b"}" * depth
    half = depth // 2
    return b'[{"a":' * half + b"null" + b"}]" * half


# Each mutator changes a Work in place: (work, rng, other filled frame, ctx).


def m_bad_utf8_field(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    w.in_string(r, r.choice(BAD_UTF8))


def m_bad_utf8_unknown(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    bad = r.choice(BAD_UTF8)
    if r.random() < 0.3:  # in the key of an unknown field
        w.add(r, b"1", key=b'"k' + bad + b'"')
    else:
        w.add(r, b'"ok' + bad + b'"')


def m_bad_utf8_anywhere(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    d = w.data()
    i = r.randrange(len(d) + 1)
    w.set_raw(d[:i] + r.choice(BAD_UTF8) + d[i:])


def m_truncated_multibyte(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    """A valid multi-byte char in a string, then the frame cut inside it (or the char cut)."""
    char = r.choice(["é", "€", "😀"]).encode()
    w.in_string(r, b"\x01" + char)
    d = w.data()
    i = d.find(b"\x01" + char)
    if i < 0:
        return
    if r.random() < 0.5:
        w.set_raw(d[:i] + d[i + 1 : i + 1 + r.randrange(1, len(char))])
    else:
        w.set_raw(d[:i] + d[i + 1 : i + len(char)] + d[i + 1 + len(char) :])


def m_surrogate(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    esc = r.choice(SURROGATE_ESCAPES)
    roll = r.random()
    if roll < 0.5:
        w.in_string(r, esc)
    elif roll < 0.7:
        w.add(r, b"1", key=b'"k' + esc + b'"')
    else:
        w.add(r, b'"' + esc + b'"')


def m_deep(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    deep = _nest(r.choice(NESTING_DEPTHS), r.randrange(3))
    roll = r.random()
    if roll < 0.6:
        w.replace(r, deep, _VALUE_KEYS)
    elif roll < 0.8:
        w.add(r, deep)
    else:
        w.replace(r, deep)


def m_deep_state(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    """A state_set whose value is nested around the limit."""
    deep = _nest(r.choice(NESTING_DEPTHS), r.randrange(3))
    head = b'{"type":"state_set","session":"' + c.session.encode() + b'","at":' + repr(c.now).encode()
    w.set_raw(head + b',"set":{"geometry.deep":' + deep + b"}}")


def m_number(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    num = r.choice(SPECIAL_NUMBERS)
    roll = r.random()
    if roll < 0.5:
        w.replace(r, num, _NUMBER_KEYS)
        return
    if roll < 0.8:  # a number anywhere (inside payloads and state values too)
        d = w.data()
        spans = [m.span() for m in _NUMBER.finditer(d, 0, 20_000)]
        if spans:
            s, e = r.choice(spans)
            w.set_raw(d[:s] + num + d[e:])
            return
    w.add(r, num)


def m_dup_key(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    if r.random() < 0.4:
        w.add(r, b'"' + r.choice(_TYPES) + b'"', key=b'"type"')
        return
    f = w.field(r)
    if f is not None:
        w.add(r, f[1] if r.random() < 0.5 else r.choice(WRONG_TYPES), key=f[0])


def m_giant(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    """A string field grown so that the frame is about the size limit."""
    limit = c.max_bytes
    target = r.choice(
        [
            limit - 1,
            limit,
            limit + 1,
            limit - r.randrange(200),
            limit + r.randrange(200),
            2 * limit,
            17 * limit,
        ]
    )
    key = r.choice([b'"name"', b'"event"', b'"pad"', b'"to"', b'"session"'])
    w.add(r, b'""', key=key)
    d = w.data()
    i = d.find(key + b':""') + len(key) + 2
    w.set_raw(d[:i] + b"x" * max(0, target - len(d)) + d[i:])


def m_truncate(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    d = w.data()
    w.set_raw(d[: r.randrange(len(d))] if d else d)


def m_bitflip(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    b = bytearray(w.data())
    for _ in range(r.randint(1, 4) if b else 0):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
    w.set_raw(bytes(b))


def m_bytes(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    b = bytearray(w.data())
    for _ in range(r.randint(1, 3)):
        op = r.randrange(3)
        i = r.randrange(len(b) + 1)
        if op == 0:
            b[i:i] = bytes([r.randrange(256)])
        elif op == 1 and b:
            del b[i : i + r.randint(1, 4)]
        elif b:
            b[min(i, len(b) - 1)] = r.choice(b'{}[]",:\\0123456789-.eEtrufalsn \x00\x7f')
    w.set_raw(bytes(b))


def m_splice(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    d = w.data()
    w.set_raw(d[: r.randrange(len(d) + 1)] + o[r.randrange(len(o) + 1) :])


def m_whole(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    d = w.data()
    w.set_raw(
        r.choice(
            [
                b"",
                b" ",
                b" \t\r\n",
                b"\xef\xbb\xbf" + d,
                b"[" + d + b"]",
                b"[" + d + b"," + o + b"]",
                b"1",
                b"-0.0",
                b"null",
                b"true",
                b'"type"',
                b"[]",
                b"{}",
                d + d,
                d + b" " + o,
                d + b"\n",
                b"\n" + d,
                d + b"x",
                d + b"\x00",
                d.replace(b":", b" : ").replace(b",", b" , "),
                d.replace(b'"', b"'"),
                b'{"type":null}',
                b'{"type":1}',
                b'{"type":"create"}',
                b'{"type":"create","name":""}',
                b'{"type":"welcome","server":"x","conn":"c1","time":1,"limits":{}}',
                b'{"type":"error","code":"x","message":"y"}',
                b'{"type":"time","t0":1}',
            ]
        )
    )


def m_wrong_type(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    w.replace(r, c.fill(r.choice(WRONG_TYPES)))


def m_drop_or_rename(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    if not w.parts:
        return
    i = r.randrange(len(w.parts))
    if r.random() < 0.5:
        del w.parts[i]
    else:
        key = w.parts[i][0][1:-1]
        snake = re.sub(rb"([A-Z])", rb"_\1", key).lower()
        new = r.choice([key.upper(), key.capitalize(), snake, key + b" ", b""])
        w.parts[i][0] = b'"' + new + b'"'
    w.raw = None


def m_control_chars(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    w.in_string(r, r.choice([b"\x00", b"\x01", b"\x1f", b"\n", b"\t", b"\x7f", b"\\x", b"\\"]), whole=0.0)


def m_unicode(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    """Valid but tricky text: multi-byte chars, max code point, noncharacters, RTL marks."""
    chars = ["é", "😀" * 17, "\U0010ffff", "\ufffe", "\u202e", "\u0301", "ß" * 40, "€" * 64]
    w.in_string(r, r.choice(chars).encode())


def m_state_conflict(w: Work, r: random.Random, o: bytes, c: FuzzContext) -> None:
    """A state_set whose paths conflict inside the message (value and parent of another path)."""
    me = c.me
    pairs = [
        ("geometry.e", "geometry.e.f"),
        ("geometry.e.f", "geometry.e"),
        (f"participants.{me}.a", f"participants.{me}.a.b"),
        ("polarity.x.y", "polarity.x"),
        ("geometry.e", "geometry.e.f.g.h"),
    ]
    a, b = r.choice(pairs)
    msg = {"type": "state_set", "session": c.session, "at": c.now, "set": {a: 1, b: 2}, "rid": r.randrange(9)}
    w.set_raw(_encode(msg))


Mutator = Callable[[Work, random.Random, bytes, FuzzContext], None]
MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (m_bad_utf8_field, 6),
    (m_bad_utf8_unknown, 5),
    (m_bad_utf8_anywhere, 2),
    (m_truncated_multibyte, 3),
    (m_surrogate, 5),
    (m_deep, 4),
    (m_deep_state, 2),
    (m_number, 6),
    (m_dup_key, 4),
    (m_giant, 1),
    (m_truncate, 3),
    (m_bitflip, 3),
    (m_bytes, 3),
    (m_splice, 2),
    (m_whole, 2),
    (m_wrong_type, 8),
    (m_drop_or_rename, 4),
    (m_control_chars, 2),
    (m_unicode, 4),
    (m_state_conflict, 2),
)
_MUTATOR_TABLE: list[Mutator] = [m for m, w in MUTATORS for _ in range(w)]


def mutate(frame: bytes, rng: random.Random, other: bytes, ctx: FuzzContext) -> bytes:
    """One to three mutations of a (filled-in) valid frame."""
    work = Work(frame)
    for _ in range(1 if rng.random() < 0.75 else rng.randint(2, 3)):
        rng.choice(_MUTATOR_TABLE)(work, rng, other, ctx)
        if work.raw is not None and len(work.raw) > 2 * ctx.max_bytes:  # giant: no further mutation
            break
    return work.data()


@dataclass
class Corpus:
    """A deterministic frame stream: valid frames from a pool, and mutations of them."""

    seed: int
    ctx: FuzzContext
    pool: list[bytes]
    valid_share: float = 0.3
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next(self) -> bytes:
        rng, ctx, pool = self.rng, self.ctx, self.pool
        frame = ctx.fill(pool[rng.randrange(len(pool))])
        if rng.random() < self.valid_share:
            return frame
        return mutate(frame, rng, ctx.fill(pool[rng.randrange(len(pool))]), ctx)


_POOLS: dict[tuple[int, int], list[bytes]] = {}


def pool(seed_value: int, size: int) -> list[bytes]:
    """The valid-frame pool for a seed (generated once per process)."""
    key = (seed_value, size)
    if key not in _POOLS:
        _POOLS[key] = valid_frames(seed_value, size)
    return _POOLS[key]


def corpus(seed_value: int, n: int, ctx: FuzzContext, pool_size: int = 2000) -> Iterator[bytes]:
    """`n` frames, deterministic for `seed_value`: valid frames and mutations of them mixed.

    `ctx` is read at each step, so a harness may rebuild its world (and update `ctx`) midway.
    """
    stream = Corpus(seed_value, ctx, pool(seed_value, pool_size))
    for _ in range(n):
        yield stream.next()
