"""Running ``wrk`` (a separate process on loopback) and reading the JSON line our Lua scripts print."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors + non-2xx/3xx responses + timeouts
    exhausted: int
    raw: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int = 32,
    threads: int = 2,
    env: dict[str, str] | None = None,
    timeout_s: int = 10,
) -> WrkResult:
    """One wrk run; ``script`` is a file name in bench/lua; ``env`` feeds the script."""
    threads = min(threads, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        str(threads),
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), **(env or {})},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(
        int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
        exhausted=int(data["exhausted"]),
        raw=data,
    )
