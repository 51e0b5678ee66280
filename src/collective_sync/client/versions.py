"""Per-path version guard for `state` messages (twin of web/sdk/versions.js; pure).

State reaches a client twice when it has a data channel: once over the unordered, lossy channel
and again in the WebSocket's coalesced copy; either may come first, and a channel message may
overtake a newer one. A path is applied only from a message whose `v` is above the last `v`
applied to that path; a duplicate or an older message changes nothing. The `joined` snapshot is
the floor: every message at or below its `v` is already in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_PATHS = 16384  # remembered paths before the floor is raised (a session holds <= 4096 live keys)


class VersionGuard:
    __slots__ = ("applied", "floor", "max_paths")

    def __init__(self, floor: int = 0, max_paths: int = MAX_PATHS) -> None:
        self.floor = floor
        self.max_paths = max_paths
        self.applied: dict[str, int] = {}

    def admit(self, changes: Mapping[str, Any], v: int) -> Mapping[str, Any] | None:
        """The part of `changes` newer than what was applied (the same mapping when all of it
        is), or None when nothing is; what it returns counts as applied."""
        if v <= self.floor:
            return None
        applied, floor = self.applied, self.floor
        fresh: dict[str, Any] = {}
        for path, value in changes.items():
            if applied.get(path, floor) < v:
                applied[path] = v
                fresh[path] = value
        if len(applied) > self.max_paths:
            self._raise_floor()
        if not fresh:
            return None
        return changes if len(fresh) == len(changes) else fresh

    def _raise_floor(self) -> None:
        """Forget the older half: messages at or below the new floor are then refused."""
        vs = sorted(self.applied.values())
        self.floor = max(self.floor, vs[len(vs) // 2])
        self.applied = {p: v for p, v in self.applied.items() if v > self.floor}
