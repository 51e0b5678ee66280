"""Protocol fuzzer (issue 7): structure-aware frames and byte mutations against the server.

    python bench/fuzz.py core --frames 1000000 --seed 1 --json bench/results/fuzz_core.json
    python bench/fuzz.py core --frames 200000 --seed 2 --default-limits   # rate limiter on
    python bench/fuzz.py server --frames 100000 --seed 1 --json bench/results/fuzz_server.json

`core` drives the pure server core in-process (tests/fuzz/harness.py, invariants per frame);
`server` starts `collective-sync serve` on 127.0.0.1 (a free port, rate limit raised by flag) and
sends the frames over real WebSocket connections, then scans the server's stderr for tracebacks.
Prints the JSON report and a one-line table row; exits 1 if there are findings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz.harness import CoreReport, normal_client_works, run_core, run_socket_campaign

ROW = (
    "| {mode} | {frames} | {seconds:.1f} s | {fps} frames/s | {findings} findings "
    "| errors {errors} | closes {closes} |"
)


def _row(mode: str, report: dict[str, Any]) -> str:
    return ROW.format(
        mode=mode,
        frames=report["frames"],
        seconds=report["seconds"],
        fps=report["frames_per_second"],
        findings=report["findings_total"],
        errors=sum(report["replies_by_error_code"].values()),
        closes=report["closes_by_code"] or "none",
    )


def core(args: argparse.Namespace) -> dict[str, Any]:
    def progress(r: CoreReport) -> None:
        rate = r.frames / r.seconds if r.seconds else 0.0
        print(f"  {r.frames} frames, {rate:.0f}/s, {len(r.findings)} findings", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    report = run_core(
        args.seed, args.frames, default_limits=args.default_limits, pool_size=args.pool, progress=progress
    )
    out = report.to_json()
    out["pool_seconds"] = round(time.perf_counter() - t0 - report.seconds, 2)
    out["default_limits"] = args.default_limits
    return out


def server(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "collective_sync",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--memory",
        "--log-level",
        "WARNING",
    ]
    if not args.default_limits:
        cmd += ["--rate", "1e12", "--burst", str(10**12)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # stderr goes to a file: an undrained pipe fills up with the server's log and blocks the server.
    with tempfile.TemporaryFile() as log:
        out = _serve_and_fuzz(cmd, env, log, args)
        log.seek(0)
        stderr = log.read().decode(errors="replace")
    suspicious = [
        ln
        for ln in stderr.splitlines()
        if re.search(r"Traceback|Error|1011|Exception", ln)
        and "KeyboardInterrupt" not in ln
        and "MESSAGE_TOO_BIG" not in ln  # picows logs the documented 1009 close at ERROR
    ]
    out["stderr_suspicious_lines"] = len(suspicious)
    out["stderr_examples"] = suspicious[:20]
    if suspicious:
        out["findings_total"] += len(suspicious)
        out["findings_by_kind"]["server_stderr"] = len(suspicious)
    if not (out["server_alive"] and out["normal_client_after"]):
        out["findings_total"] += 1
        out["findings_by_kind"]["server_unhealthy_after"] = 1
    out["default_limits"] = args.default_limits
    return out


def _serve_and_fuzz(
    cmd: list[str], env: dict[str, str], log: Any, args: argparse.Namespace
) -> dict[str, Any]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if m is None:
            raise RuntimeError(f"server did not start: {line!r}")
        url = f"ws://127.0.0.1:{m.group(1)}/ws"

        async def main() -> tuple[dict[str, Any], bool]:
            report = await run_socket_campaign(
                url, args.seed, args.frames, connections=args.connections, window=args.window
            )
            return report.to_json(), await normal_client_works(url)

        out, healthy = asyncio.run(main())
        out["server_alive"] = proc.poll() is None
        out["normal_client_after"] = healthy
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["core", "server"])
    parser.add_argument("--frames", type=int, default=None, help="default 1,000,000 (core), 100,000 (server)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--default-limits", action="store_true", help="keep the default rate limit")
    parser.add_argument("--pool", type=int, default=2000, help="structure-aware frames generated up front")
    parser.add_argument("--connections", type=int, default=4, help="server mode: fuzzing connections")
    parser.add_argument("--window", type=int, default=32, help="server mode: frames in flight per connection")
    args = parser.parse_args()
    if args.frames is None:
        args.frames = 1_000_000 if args.mode == "core" else 100_000
    out = core(args) if args.mode == "core" else server(args)
    out = {"mode": args.mode, "seed": args.seed, **out}
    text = json.dumps(out, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(_row(args.mode, out))
    sys.exit(1 if out["findings_total"] else 0)


if __name__ == "__main__":
    main()
