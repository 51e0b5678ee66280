"""The per-path version guard of state messages (Python twin of web/sdk/versions.js)."""

from __future__ import annotations

from collective_sync.client.versions import VersionGuard


def test_newer_paths_pass_and_copies_or_older_ones_do_not() -> None:
    g = VersionGuard(floor=3)
    assert g.admit({"a": 1}, 3) is None  # in the snapshot already
    changes = {"a": 1, "b": 2}
    assert g.admit(changes, 5) is changes  # all new: the same mapping
    assert g.admit({"a": 9}, 5) is None  # a copy (data channel, then the WebSocket)
    assert g.admit({"a": 0}, 4) is None  # overtaken by v5: an older value must not win
    assert g.admit({"a": 7, "c": 3}, 6) == {"a": 7, "c": 3}
    assert g.admit({"a": 1, "b": 8}, 5) is None  # coalesced copy older than a for a, copy for b


def test_a_coalesced_copy_applies_only_what_is_newer_per_path() -> None:
    g = VersionGuard()
    g.admit({"a": 1}, 10)
    assert g.admit({"a": 0, "b": 2}, 9) == {"b": 2}  # b had never come (lost on the channel)


def test_memory_is_bounded_by_raising_the_floor() -> None:
    g = VersionGuard(max_paths=100)
    for v in range(1, 1001):
        g.admit({f"p{v}": v}, v)
    assert len(g.applied) <= 100
    assert g.admit({"p1": 0}, 1) is None  # below the floor: refused
    assert g.admit({"p1000": 5}, 1001) == {"p1000": 5}
