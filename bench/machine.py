"""Machine and software details printed with the results, and the argon2id cost measurement."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _peer_version() -> str:
    path = ROOT / "bench" / "peer" / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def src_fingerprint() -> str:
    """A short hash of every file under src/: tells which code a run measured, even uncommitted."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def details(pg_version: str | None) -> dict[str, str]:
    from authpi import __version__

    commit = _run("git", "rev-parse", "--short=12", "HEAD")
    dirty = _run("git", "status", "--porcelain", "--untracked-files=no")
    wrk = _run("wrk", "--version").splitlines()
    return {
        "CPU": _cpu_model(),
        "Cores": str(os.cpu_count()),
        "RAM": f"{_ram_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Node": _run("node", "--version"),
        "oidc-provider": _peer_version(),
        "wrk": wrk[0].split(" [")[0] if wrk else "?",
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": pg_version or "not run",
        "authpi-server": __version__,
        "git commit": commit + (" (with uncommitted changes)" if dirty and dirty != "?" else ""),
        "src/ fingerprint": src_fingerprint(),
        "Date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def argon2_verify_cost(samples: int = 21) -> float:
    """Median seconds of one argon2id verify at the server's parameters (m=19456 KiB, t=2, p=1)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
    stored = hasher.hash("correct horse battery staple")
    hasher.verify(stored, "correct horse battery staple")
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        hasher.verify(stored, "correct horse battery staple")
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def python_executable() -> str:
    return sys.executable
