"""The README's client example must work as pasted (only the port differs)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_readme_client_example_runs(server) -> None:
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "README has no python example"
    source = code.group(1)
    assert len(source.strip().splitlines()) <= 25
    source = source.replace("127.0.0.1:8765", f"127.0.0.1:{server.port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", source, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "participants: ['Ana', 'Ben']" in out.decode()
    assert "'geometry': {'R': 2.0}" in out.decode()
