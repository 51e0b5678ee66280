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

from collections.abc import Mapping
from pathlib import Path

SYSCTL_DIR = Path("/proc/sys/net/core")
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
