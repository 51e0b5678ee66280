"""The protocol fuzzer, short and seeded, in-process: no invariant may break (issue 7).

The long campaign is `python bench/fuzz.py core --frames 1000000`.
"""

from __future__ import annotations

import json

import pytest

from fuzz.harness import run_core

POOL = 300  # structure-aware frames generated up front (hypothesis), mutated from then on


def _explain(report: dict[str, object]) -> str:
    return json.dumps(report["findings"], indent=1, ensure_ascii=False)[:6000]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
def test_core_survives_fuzzing(seed: int) -> None:
    report = run_core(seed, 15_000, pool_size=POOL).to_json()
    assert report["frames"] == 15_000
    assert report["accepted"] > 0  # the valid share gets through
    assert report["findings_total"] == 0, _explain(report)


@pytest.mark.timeout(120)
def test_core_survives_fuzzing_at_default_limits() -> None:
    report = run_core(3, 10_000, default_limits=True, pool_size=POOL).to_json()
    assert report["findings_total"] == 0, _explain(report)
