"""Kernel limits in front of `accept`: read from sysctl files, advice only where one is short."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from collective_sync.server.hostlimits import (
    OPEN_FILES_CEILING,
    WANTED,
    open_files_target,
    read_limits,
    short_limits,
)


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


def test_the_open_files_target_is_all_the_hard_limit_allows() -> None:
    assert open_files_target(1024, 4096) == 4096
    assert open_files_target(4096, 4096) is None
    assert open_files_target(1024, resource.RLIM_INFINITY) == OPEN_FILES_CEILING
    assert open_files_target(resource.RLIM_INFINITY, resource.RLIM_INFINITY) is None


def test_the_served_process_raises_its_soft_open_files_limit_before_it_listens() -> None:
    """A real `collective-sync serve`, started with a soft limit of 256: it listens with all its
    hard limit allows (one descriptor per connection, plus the listening sockets)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    cmd = [sys.executable, "-m", "collective_sync", "serve", "--port", "0", "--memory", "--no-rtc"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=low_soft_limit)
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
        assert int(soft) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=15)
