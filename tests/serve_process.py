"""``authpi serve`` as a process the test controls: its environment, its signals, its exit status.

``tests.harness.run_server`` gives the long-lived server most tests share; this one is for tests about
the process itself (start-up, shutdown, the address it publishes), which end or configure it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.harness import database, free_port


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log_path: Path
    credentials: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def basic_auth(self) -> str:
        pair = f"{self.credentials['key_id']}:{self.credentials['key_secret']}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def log(self) -> str:
        return self.log_path.read_text()

    def tracebacks(self) -> list[str]:
        return [line for line in self.log().splitlines() if "Traceback" in line]

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM; the exit status (None if still running after ``timeout``) and the seconds taken."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            status: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            status = None
        return status, time.monotonic() - started


def cli_env(data_dir: Path, db_url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an ``authpi`` command with every AUTHPI_* setting but the given ones unset."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHPI_")}
    env.update({"AUTHPI_DATA_DIR": str(data_dir), "AUTHPI_RATE_LIMITS_ENABLED": "false"})
    if db_url:
        env["AUTHPI_DATABASE_URL"] = db_url
    env.update(extra or {})
    return env


def authpi(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authpi", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def serve_process(
    backend: str, extra_env: dict[str, str] | None = None, *, workers: int = 1, host: str = "127.0.0.1"
) -> Iterator[ServeProcess]:
    """A bootstrapped ``authpi serve`` on a free port, answering ``/healthz``; AUTHPI_PUBLIC_URL is not
    set unless ``extra_env`` sets it. Killed on exit if the test left it running."""
    with tempfile.TemporaryDirectory(prefix="authpi-proc-") as tmp, database(backend, Path(tmp)) as db_url:
        env = cli_env(Path(tmp) / "data", db_url, {"AUTHPI_LOG_LEVEL": "info", **(extra_env or {})})
        boot = authpi(env, "bootstrap")
        assert boot.returncode == 0, boot.stderr
        port = free_port()
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            command = ["serve", "--host", host, "--port", str(port), "--workers", str(workers)]
            proc = subprocess.Popen(
                [sys.executable, "-m", "authpi", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, workers included
            )
        running = ServeProcess(proc, port, env, log_path, json.loads(boot.stdout))
        try:
            _wait_until_serving(running)
            yield running
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_until_serving(running: ServeProcess) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if running.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start:\n" + running.log())
        time.sleep(0.1)
