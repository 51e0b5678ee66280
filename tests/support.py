"""Helpers shared by test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collective_sync.server.config import ServerConfig


def make_config(**overrides: object) -> ServerConfig:
    """Test settings: any free port, short grace/ttl so lifecycle tests are quick."""
    settings: dict[str, object] = {"port": 0, "session_ttl": 0.5, "tick_interval": 0.02, **overrides}
    config = ServerConfig(**settings)  # type: ignore[arg-type]
    config.session.grace_period = 0.3
    return config
