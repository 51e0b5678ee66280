"""Conformance tests: `@pytest.mark.config(**overrides)` picks the server settings of one test.

Keyword arguments are `ServerConfig` fields; `grace_period`, `max_clock_skew`, `history` and
`max_state_keys` go to its session limits. Without the marker the server runs with
`support.make_config()` (documented limits, short grace period and session lifetime).
"""

from __future__ import annotations

import dataclasses

import pytest
from support import make_config

from collective_sync.server.config import ServerConfig
from collective_sync.server.session import SessionLimits

_SESSION_LIMITS = {field.name for field in dataclasses.fields(SessionLimits)}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "config(**overrides): server settings for one conformance test")


@pytest.fixture
def server_config(request: pytest.FixtureRequest) -> ServerConfig:
    marker = request.node.get_closest_marker("config")
    overrides = dict(marker.kwargs) if marker else {}
    session = {k: overrides.pop(k) for k in list(overrides) if k in _SESSION_LIMITS}
    config = make_config(**overrides)
    for key, value in session.items():
        setattr(config.session, key, value)
    return config
