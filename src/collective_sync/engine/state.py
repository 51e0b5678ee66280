"""The session's engine-state document: a flat map of key paths with last-writer-wins merge.

Why flat paths: concurrent writers touch different leaves (the leader moves `geometry.R` while a
participant updates `participants.<id>.biofeedback.hr`), so merging per leaf keeps both; a
path may not be both a leaf and the parent of another leaf, which keeps the nested view
well-defined. Each leaf keeps the stamp (network time `at`, writer id) that won it; ties on
`at` are broken by writer id, and a writer's own later message with the same `at` wins, so
every replica that sees the same messages ends with the same document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..protocol.errors import ErrorCode, ProtocolError

LEADER_ROOTS: frozenset[str] = frozenset({"oscillators", "geometry", "polarity"})
PARTICIPANT_ROOT = "participants"
MAX_DEPTH = 8
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Stamp = tuple[float, str]


def check_path(path: str, writer: str, is_leader: bool) -> None:
    """Raise ProtocolError unless `writer` may write `path` (leader-only roots vs own area)."""
    segments = path.split(".")
    if len(segments) > MAX_DEPTH or not all(_SEGMENT.match(s) for s in segments):
        raise ProtocolError(ErrorCode.INVALID_PATH, f"malformed path {path[:80]!r}")
    root = segments[0]
    if root in LEADER_ROOTS:
        if not is_leader:
            raise ProtocolError(ErrorCode.NOT_LEADER, f"only the leader may write {root}.*")
    elif root == PARTICIPANT_ROOT:
        if len(segments) < 3:
            raise ProtocolError(ErrorCode.INVALID_PATH, "participant paths are participants.<id>.<key>")
        if segments[1] != writer:
            raise ProtocolError(ErrorCode.FORBIDDEN, "a participant may only write its own area")
    else:
        raise ProtocolError(ErrorCode.INVALID_PATH, f"unknown state root {root!r}")


_NO_STAMP: Stamp = (float("-inf"), "")


def _area(path: str) -> str:
    """Whose path it is: `participants.<id>` for a participant's area, else its (leader) root."""
    parts = path.split(".", 2)
    return f"{parts[0]}.{parts[1]}" if parts[0] == PARTICIPANT_ROOT else parts[0]


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class StateDoc:
    """Authoritative document of one session. `version` grows by one per accepted update.

    A deleted path leaves a tombstone (its winning stamp) so that an older write cannot bring it
    back. Tombstones do not count toward `max_keys`; they are kept per writer's area (a leader
    root, or one participant's area) in deletion order, at most `2 * max_keys` in all. Beyond
    that, the oldest tombstone of the area holding the most is forgotten and its stamp raises
    that area's floor, below which a write to a path without a stamp loses. Forgetting never lets
    a stale write win, and a writer that churns through paths pays with its own area's floor.
    """

    max_keys: int = 4096
    values: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)  # winning stamp of every live path
    tombstones: dict[str, dict[str, Stamp]] = field(default_factory=dict)  # area -> path -> stamp
    tombstone_count: int = 0
    # The area that last grew past the others' tombstone counts: the churner, found in O(1).
    _crowded: str = ""
    floors: dict[str, Stamp] = field(default_factory=dict)  # area -> stamp of forgotten tombstones
    version: int = 0
    # Live leaves below each interior prefix, to reject leaf/parent conflicts in O(depth).
    _interior: dict[str, int] = field(default_factory=dict)

    def validate(self, changes: Mapping[str, Any], writer: str, is_leader: bool) -> None:
        """Check permissions, shape and capacity for a whole update before anything is applied."""
        new_keys = 0
        for path, value in changes.items():
            check_path(path, writer, is_leader)
            for prefix in _prefixes(path):
                if prefix in changes:
                    raise ProtocolError(ErrorCode.INVALID_PATH, f"{prefix!r} and {path!r} in one update")
            if value is None:
                continue
            if path in self._interior:
                raise ProtocolError(ErrorCode.INVALID_PATH, f"{path!r} has children; set its leaves")
            for prefix in _prefixes(path):
                if prefix in self.values:
                    raise ProtocolError(ErrorCode.INVALID_PATH, f"{prefix!r} is a value, not an object")
            if path not in self.values:
                new_keys += 1
        if len(self.values) + new_keys > self.max_keys:
            raise ProtocolError(ErrorCode.STATE_FULL, f"state is limited to {self.max_keys} keys")

    def apply(self, changes: Mapping[str, Any], at: float, writer: str) -> dict[str, Any]:
        """Merge validated changes; return the subset that won (empty: nothing changed)."""
        stamp = (at, writer)
        won: dict[str, Any] = {}
        for path, value in changes.items():
            old = self.stamps.get(path)
            if old is None:
                area = _area(path)
                old = self.tombstones.get(area, {}).get(path) or self.floors.get(area, _NO_STAMP)
            if stamp < old:
                continue
            self._store(path, value, stamp)
            won[path] = value
        if won:
            self.version += 1
        return won

    def remove_area(self, prefix: str) -> dict[str, None]:
        """Drop every key below `prefix` (a departed participant's area); returns the deletions.

        No tombstones: nobody may write a departed participant's area any more."""
        start = prefix + "."
        gone = [p for p in self.stamps if p.startswith(start)]
        for path in gone:
            del self.values[path]
            del self.stamps[path]
            self._count(path, -1)
        self.tombstone_count -= len(self.tombstones.pop(prefix, {}))
        self.floors.pop(prefix, None)
        if self._crowded == prefix:
            self._crowded = self._most_crowded()
        if gone:
            self.version += 1
        return dict.fromkeys(gone)

    def dump(self) -> bytes:
        """Everything that decides future merges (values, stamps, tombstones, floors, version), for
        a durable snapshot; the derived indexes are rebuilt by `load`."""
        return msgspec.json.encode(
            _Dump(self.version, self.values, self.stamps, self.tombstones, self.floors)
        )

    @classmethod
    def load(cls, data: bytes, max_keys: int = 4096) -> StateDoc:
        d = msgspec.json.decode(data, type=_Dump)
        doc = cls(max_keys, d.values, d.stamps, d.tombstones, floors=d.floors, version=d.version)
        doc.tombstone_count = sum(len(g) for g in doc.tombstones.values())
        doc._crowded = doc._most_crowded()
        for path in doc.values:
            doc._count(path, +1)
        return doc

    def _store(self, path: str, value: Any, stamp: Stamp) -> None:
        was_live = path in self.values
        if value is None:
            if was_live:
                del self.values[path]
                del self.stamps[path]
                self._count(path, -1)
            self._bury(path, stamp)
        else:
            self.values[path] = value
            self.stamps[path] = stamp
            graves = self.tombstones.get(_area(path))
            if graves is not None and graves.pop(path, None) is not None:
                self.tombstone_count -= 1
            if not was_live:
                self._count(path, +1)

    def _bury(self, path: str, stamp: Stamp) -> None:
        area = _area(path)
        graves = self.tombstones.setdefault(area, {})
        if graves.pop(path, None) is None:  # re-inserted at the end: deletion order
            self.tombstone_count += 1
        graves[path] = stamp
        if len(graves) > len(self.tombstones.get(self._crowded, ())):
            self._crowded = area
        if self.tombstone_count > 2 * self.max_keys:
            area = self._crowded
            crowded = self.tombstones[area]
            forgotten = crowded.pop(next(iter(crowded)))
            self.tombstone_count -= 1
            self.floors[area] = max(self.floors.get(area, _NO_STAMP), forgotten)
            if not crowded:
                del self.tombstones[area]
                self._crowded = self._most_crowded()

    def _most_crowded(self) -> str:
        """The area holding the most tombstones (a full scan: only when the tracked one is gone)."""
        return max(self.tombstones, key=lambda a: len(self.tombstones[a]), default="")

    def _count(self, path: str, delta: int) -> None:
        for prefix in _prefixes(path):
            n = self._interior.get(prefix, 0) + delta
            if n:
                self._interior[prefix] = n
            else:
                self._interior.pop(prefix, None)


class _Dump(msgspec.Struct, array_like=True):
    """The persisted form of a StateDoc (JSON: inspectable with any SQLite shell)."""

    version: int
    values: dict[str, Any]
    stamps: dict[str, tuple[float, str]]
    tombstones: dict[str, dict[str, tuple[float, str]]]
    floors: dict[str, tuple[float, str]]


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested-dict view of a flat path map (what SDK users read as `session.state`)."""
    root: dict[str, Any] = {}
    for path, value in values.items():
        node = root
        *parents, leaf = path.split(".")
        for seg in parents:
            nxt = node.get(seg)
            if not isinstance(nxt, dict):
                nxt = node[seg] = {}
            node = nxt
        node[leaf] = value
    return root
