"""The committed cross-language vectors still describe the Python timing core.

If this fails after a deliberate change to the algorithms, regenerate the file
(`python -m collective_sync.timing.vectors tests/vectors/timing.json`) and make the JavaScript port
(`src/collective_sync/web/sdk/`) pass `node --test tests/js/` again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from collective_sync.timing.vectors import make_vectors

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "timing.json"


def assert_same(a: Any, b: Any, path: str = "$") -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_committed_vectors_match_the_python_implementation() -> None:
    committed = json.loads(VECTORS.read_text())
    fresh = json.loads(json.dumps(make_vectors()))
    assert_same(fresh, committed)
    assert sum(len(c["steps"]) for c in committed["clock"]) > 1000
