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

from ..protocol.errors import ErrorCode

LEADER_ROOTS: frozenset[str] = frozenset({"oscillators", "geometry", "polarity"})
PARTICIPANT_ROOT = "participants"
MAX_DEPTH = 8
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Stamp = tuple[float, str]


class StateError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def check_path(path: str, writer: str, is_leader: bool) -> None:
    """Raise StateError unless `writer` may write `path` (leader-only roots vs own area)."""
    segments = path.split(".")
    if len(segments) > MAX_DEPTH or not all(_SEGMENT.match(s) for s in segments):
        raise StateError(ErrorCode.INVALID_PATH, f"malformed path {path[:80]!r}")
    root = segments[0]
    if root in LEADER_ROOTS:
        if not is_leader:
            raise StateError(ErrorCode.NOT_LEADER, f"only the leader may write {root}.*")
    elif root == PARTICIPANT_ROOT:
        if len(segments) < 3:
            raise StateError(ErrorCode.INVALID_PATH, "participant paths are participants.<id>.<key>")
        if segments[1] != writer:
            raise StateError(ErrorCode.FORBIDDEN, "a participant may only write its own area")
    else:
        raise StateError(ErrorCode.INVALID_PATH, f"unknown state root {root!r}")


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class StateDoc:
    """Authoritative document of one session. `version` grows by one per accepted update."""

    max_keys: int = 4096
    values: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)
    version: int = 0
    # Live leaves below each interior prefix, to reject leaf/parent conflicts in O(depth).
    _interior: dict[str, int] = field(default_factory=dict)

    def validate(self, changes: Mapping[str, Any], writer: str, is_leader: bool) -> None:
        """Check permissions, shape and capacity for a whole update before anything is applied."""
        new_keys = 0
        for path, value in changes.items():
            check_path(path, writer, is_leader)
            if value is None:
                continue
            if path in self._interior:
                raise StateError(ErrorCode.INVALID_PATH, f"{path!r} has children; set its leaves")
            for prefix in _prefixes(path):
                if prefix in self.values:
                    raise StateError(ErrorCode.INVALID_PATH, f"{prefix!r} is a value, not an object")
            if path not in self.stamps:
                new_keys += 1
        if len(self.stamps) + new_keys > self.max_keys:
            raise StateError(ErrorCode.STATE_FULL, f"state is limited to {self.max_keys} keys")

    def apply(self, changes: Mapping[str, Any], at: float, writer: str) -> dict[str, Any]:
        """Merge validated changes; return the subset that won (empty: nothing changed)."""
        stamp = (at, writer)
        won: dict[str, Any] = {}
        for path, value in changes.items():
            old = self.stamps.get(path)
            if old is not None and stamp < old:
                continue
            self.stamps[path] = stamp
            self._store(path, value)
            won[path] = value
        if won:
            self.version += 1
        return won

    def remove_area(self, prefix: str) -> dict[str, None]:
        """Drop every key below `prefix` (a departed participant's area); returns the deletions."""
        start = prefix + "."
        gone = [p for p in self.stamps if p.startswith(start)]
        for path in gone:
            self._store(path, None)
            del self.stamps[path]
        if gone:
            self.version += 1
        return dict.fromkeys(gone)

    def _store(self, path: str, value: Any) -> None:
        was_live = path in self.values
        if value is None:
            if was_live:
                del self.values[path]
                self._count(path, -1)
        else:
            self.values[path] = value
            if not was_live:
                self._count(path, +1)

    def _count(self, path: str, delta: int) -> None:
        for prefix in _prefixes(path):
            n = self._interior.get(prefix, 0) + delta
            if n:
                self._interior[prefix] = n
            else:
                self._interior.pop(prefix, None)


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
