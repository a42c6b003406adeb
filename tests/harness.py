"""Runs the real ``authpi serve`` process for tests, on SQLite or on a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class RunningServer:
    url: str
    account_id: str
    key_id: str
    key_secret: str
    backend: str
    env: dict[str, str] = field(repr=False)
    pid: int = 0  # the `authpi serve` process (with one worker, the worker itself)
    log_path: Path | None = None  # its combined stdout and stderr

    @property
    def api_key(self) -> tuple[str, str]:
        return (self.key_id, self.key_secret)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AUTHPI_DATA_DIR"])

    def tracebacks(self) -> list[str]:
        """Lines of the server log that start a Python traceback."""
        text = self.log_path.read_text() if self.log_path else ""
        return [line for line in text.splitlines() if "Traceback" in line]

    def rss_peak_kib(self) -> int:
        """The peak resident set (VmHWM, KiB) of the server process and its workers."""
        return sum(_status_kib(pid, "VmHWM") for pid in _process_tree(self.pid))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "authpi", *args], env=self.env, capture_output=True, text=True, timeout=120
        )


def _process_tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.extend(_process_tree(int(child)))
    return found


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def database(backend: str, data_dir: Path) -> Iterator[str | None]:
    """Yield the AUTHPI_DATABASE_URL for the backend (None: the embedded SQLite default)."""
    if backend == "sqlite":
        yield None
        return
    admin_url = os.environ["AUTHPI_TEST_DATABASE_URL"]
    name = "authpi_t_" + secrets.token_hex(6)
    asyncio.run(_pg(admin_url, f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def run_server(
    backend: str, extra_env: dict[str, str] | None = None, workers: int = 1, host: str = "127.0.0.1"
) -> Iterator[RunningServer]:
    """``host`` is the name the server is published and reached under (``localhost`` for browser
    features that refuse IP addresses, such as WebAuthn); it listens on 127.0.0.1 either way."""
    with tempfile.TemporaryDirectory(prefix="authpi-test-") as tmp, database(backend, Path(tmp)) as db_url:
        port = free_port()
        env = {
            **os.environ,
            "AUTHPI_DATA_DIR": str(Path(tmp) / "data"),
            "AUTHPI_PUBLIC_URL": f"http://{host}:{port}",
            "AUTHPI_RATE_LIMITS_ENABLED": "false",
            "AUTHPI_LOG_LEVEL": "warning",
        }
        env.pop("AUTHPI_DATABASE_URL", None)
        if db_url:
            env["AUTHPI_DATABASE_URL"] = db_url
        env.update(extra_env or {})
        boot = subprocess.run(
            [sys.executable, "-m", "authpi", "bootstrap"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        creds = json.loads(boot.stdout)
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "authpi", "serve", "--port", str(port), "--workers", str(workers)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://{host}:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            yield RunningServer(
                url,
                creds["account_id"],
                creds["key_id"],
                creds["key_secret"],
                backend,
                env,
                pid=proc.pid,
                log_path=log_path,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            errors = [line for line in log_path.read_text().splitlines() if "Traceback" in line]
            if errors:
                sys.stderr.write(log_path.read_text())
