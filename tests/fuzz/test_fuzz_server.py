"""The protocol fuzzer against a real server over raw WebSocket connections (not the SDK)."""

from __future__ import annotations

import json

import pytest
from support import make_config

from collective_sync.server.config import ServerConfig
from fuzz.harness import CLOSE_CODES, ERROR_CODES, normal_client_works, run_socket_campaign


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config(rate_per_second=1e12, burst=10**12)


@pytest.mark.timeout(120)
async def test_server_survives_fuzzing(server) -> None:
    report = await run_socket_campaign(
        server.url, seed=1, frames=2_000, connections=2, window=16, pool_size=300
    )
    report = report.to_json()
    detail = json.dumps(report["findings"], indent=1, ensure_ascii=False)[:6000]
    assert report["frames"] == 2_000
    assert "1011" not in report["closes_by_code"]
    assert {int(c) for c in report["closes_by_code"]} <= CLOSE_CODES | {-1}
    assert set(report["replies_by_error_code"]) <= ERROR_CODES
    assert report["findings_total"] == 0, detail
    assert await normal_client_works(server.url)
