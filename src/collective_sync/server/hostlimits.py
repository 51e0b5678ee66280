"""Kernel limits that decide whether a join storm reaches the server at all.

Two queues sit in front of `accept`: the listen backlog, which the kernel caps at
`net.core.somaxconn`, and each core's input queue of `net.core.netdev_max_backlog` packets
(every loopback packet passes through it, and a NIC's behind RPS). When a burst overflows either,
the kernel drops SYNs (and data) without telling anyone, and each client waits out TCP's 1, 3, 7,
15 s retransmit back-off. In bench/crowd.py runs (9,000 joining at once) on a 2-core VM with the
default input queue of 1,000, most storms lost nothing, but one took 71 s with a join p99 of 29 s
(SYNs retried four or five times), and the kernel had counted 838 input-queue drops and 334 SYN
retransmits over those runs. Nothing in the process can raise these limits, so the server says so
once at start-up (docs/architecture.md, "Host tuning").
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path

SYSCTL_DIR = Path("/proc/sys/net/core")
# A descriptor per connection, plus the listening sockets (ws.py `acceptors`): a session of
# 10,000 needs more than the common soft limit of 1,024 open files.
OPEN_FILES_WANTED = 16384
OPEN_FILES_CEILING = 1 << 20  # when the hard limit is "unlimited" (the kernel's fs.nr_open default)
LISTEN_BACKLOG = 4096  # what the server asks for (ws.py); the kernel caps it at somaxconn

# sysctl -> (the least a large session needs, why)
WANTED: dict[str, tuple[int, str]] = {
    "somaxconn": (LISTEN_BACKLOG, "caps the listen backlog: a join storm's SYNs beyond it are dropped"),
    "netdev_max_backlog": (
        16384,
        "each core's input queue: a join storm or a large fan-out overflows it and drops packets",
    ),
}


def read_limits(root: Path = SYSCTL_DIR) -> dict[str, int | None]:
    """The current values (None where this kernel has no such file, or it cannot be read)."""
    values: dict[str, int | None] = {}
    for name in WANTED:
        try:
            values[name] = int((root / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            values[name] = None
    return values


def short_limits(values: Mapping[str, int | None]) -> list[str]:
    """One line of advice per limit below what a session of thousands needs; unknown values
    (another OS, a sandbox) are not guessed at."""
    advice = []
    for name, (least, why) in WANTED.items():
        value = values.get(name)
        if value is not None and value < least:
            fix = f"sysctl -w net.core.{name}={least}"
            advice.append(f"net.core.{name} is {value} ({why}); for large sessions: {fix}")
    return advice


def open_files_target(soft: int, hard: int) -> int | None:
    """The soft limit on open files to ask for: all the hard limit allows (as Go's runtime does
    at start-up), or None when the soft one is already there."""
    ceiling = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    return ceiling if soft != resource.RLIM_INFINITY and soft < ceiling else None


def raise_open_files() -> str | None:
    """Raise this process's soft limit on open files to its hard limit; returns advice when it is
    still below what a large session needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = open_files_target(soft, hard)
    if target is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # above fs.nr_open: keep what we have
    if soft != resource.RLIM_INFINITY and soft < OPEN_FILES_WANTED:
        fix = f"raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to at least {OPEN_FILES_WANTED}"
        return f"open files are limited to {soft}: one per connection; for large sessions {fix}"
    return None
