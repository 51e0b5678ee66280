"""Kernel limits in front of `accept`: read from sysctl files, advice only where one is short."""

from __future__ import annotations

from pathlib import Path

from collective_sync.server.hostlimits import WANTED, read_limits, short_limits


def test_limits_below_what_a_storm_needs_are_named_with_the_fix() -> None:
    advice = short_limits({"somaxconn": 4096, "netdev_max_backlog": 1000})
    assert len(advice) == 1
    assert "net.core.netdev_max_backlog is 1000" in advice[0]
    assert "sysctl -w net.core.netdev_max_backlog=16384" in advice[0]


def test_limits_at_or_above_the_need_and_unknown_ones_give_no_advice() -> None:
    enough = {name: least for name, (least, _) in WANTED.items()}
    assert short_limits(enough) == []
    assert short_limits({name: None for name in WANTED}) == []
    assert short_limits({}) == []


def test_values_are_read_from_sysctl_files_and_unreadable_ones_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "somaxconn").write_text("128\n")
    (tmp_path / "netdev_max_backlog").write_text("not a number\n")
    assert read_limits(tmp_path) == {"somaxconn": 128, "netdev_max_backlog": None}
    assert short_limits(read_limits(tmp_path))[0].startswith("net.core.somaxconn is 128")
    assert read_limits(tmp_path / "absent") == {"somaxconn": None, "netdev_max_backlog": None}
