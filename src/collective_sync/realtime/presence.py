"""Realtime Presence (`presence_state` / `presence_diff`) computed from session presence.

Each channel keeps a view of what its client was told: per participant, the presence key, the
`phx_ref` of its current meta, and the meta itself. A Realtime client removes a presence by
key and ref, and its `leave` callbacks read the meta it is given, so a leave must repeat what
the client holds; the view is that memory. Pure logic, fed with native `ParticipantInfo`
objects as they arrive on the connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

BOOKKEEPING = "_realtime"  # meta key the gateway keeps per participant: {"tracked": bool, "key": str}
Users = Callable[[str], "str | None"]  # participant id -> its verified user, if any


def handle(info: dict[str, Any], user: str | None) -> str:
    """The id a Realtime client knows a participant by (`user_id`, `signal.from`/`to`): its
    verified user, else the `user_id` it tracked, else its participant id."""
    if user is not None:
        return user
    claimed = (info.get("meta") or {}).get("user_id")
    return claimed if isinstance(claimed, str) and claimed else str(info["id"])


def app_role(info: dict[str, Any]) -> str:
    """The app's role words, from the server's truth: who leads (or may lead) is `facilitator`,
    an observer is a `witness`."""
    if info.get("role") == "leader" or info.get("facilitator"):
        return "facilitator"
    return "witness" if info.get("role") == "observer" else "participant"


def presence_of(info: dict[str, Any], user: str | None) -> tuple[str, dict[str, Any]] | None:
    """(key, meta) a Realtime client sees for a participant; None while it is not present
    (dropped, or subscribed through the gateway without having tracked)."""
    if info.get("connected", True) is False:
        return None
    meta = dict(info.get("meta") or {})
    book = meta.pop(BOOKKEEPING, None)
    book = book if isinstance(book, dict) else {}
    if book.get("tracked") is False:
        return None
    who = handle(info, user)
    key = book.get("key")
    meta["user_id"] = who
    meta.setdefault("display_name", info.get("name", ""))
    meta["role"] = app_role(info)
    meta["participant_id"] = info["id"]
    return (key if isinstance(key, str) and key else who), meta


class PresenceView:
    __slots__ = ("_entries", "_refs")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str, dict[str, Any]]] = {}  # pid -> (key, ref, meta)
        self._refs = itertools.count(1)

    def state(self, infos: list[dict[str, Any]], users: Users) -> dict[str, Any]:
        """The full `presence_state` payload; the view starts over from it."""
        self._entries.clear()
        out: dict[str, Any] = {}
        for info in infos:
            seen = presence_of(info, users(info["id"]))
            if seen is not None:
                key, meta = seen
                out.setdefault(key, {"metas": []})["metas"].append(self._enter(info["id"], key, meta))
        return out

    def diff(self, infos: list[dict[str, Any]], leaves: list[str], users: Users) -> dict[str, Any] | None:
        """The `presence_diff` payload for joined/updated participants (`infos`) and departed
        ones (`leaves`), or None when the client's view does not change."""
        joins: dict[str, Any] = {}
        left: dict[str, Any] = {}
        for info in infos:
            pid = info["id"]
            seen = presence_of(info, users(pid))
            held = self._entries.get(pid)
            if held is not None and seen is not None and (held[0], held[2]) == seen:
                continue  # nothing this client shows changed (e.g. its media flags)
            if held is not None:
                self._leave(pid, left)
            if seen is not None:
                key, meta = seen
                joins.setdefault(key, {"metas": []})["metas"].append(self._enter(pid, key, meta))
        for pid in leaves:
            if pid in self._entries:
                self._leave(pid, left)
        if not joins and not left:
            return None
        return {"joins": joins, "leaves": left}

    def __len__(self) -> int:
        return len(self._entries)

    def _enter(self, pid: str, key: str, meta: dict[str, Any]) -> dict[str, Any]:
        ref = str(next(self._refs))
        self._entries[pid] = (key, ref, meta)
        return {**meta, "phx_ref": ref}

    def _leave(self, pid: str, out: dict[str, Any]) -> None:
        key, ref, meta = self._entries.pop(pid)
        out.setdefault(key, {"metas": []})["metas"].append({**meta, "phx_ref": ref})
