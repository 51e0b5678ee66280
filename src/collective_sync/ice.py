"""Which local addresses WebRTC (aioice) offers as ICE host candidates, for server and SDK.

aioice gathers on every interface and has no per-connection setting, so this replaces its
address lookup for the process. A loopback-only server must offer 127.0.0.1, which aioice
leaves out by default; a server on a real network offers what it is told (`--rtc-host`).
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice

_original = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: Sequence[str] | None) -> None:
    """Offer only `addresses` (None: every interface, aioice's own choice)."""
    if addresses is None:
        aioice.ice.get_host_addresses = _original
        return
    allowed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in allowed if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
