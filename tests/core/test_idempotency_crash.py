"""A retry after the server died between committing a keyed create and answering it replays the
original response: the write and its stored response are one transaction. The worker is killed
(SIGKILL) right after the commit through the test-only AUTHPI_FAULT_INJECTION hook, the process
group is killed -9, and the server is restarted on the same data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import database, free_port

CRASH = {"X-Fault-Injection": "crash-after-commit"}


class Server:
    """``authpi serve`` in a process group of its own, so it can be killed -9 and started again."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "authpi", "serve", "--port", str(self.port), "--workers", "1"],
                env={**self.env, "AUTHPI_PUBLIC_URL": self.url},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def kill_group(self) -> None:
        assert self.proc is not None
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def crashable(backend: str) -> Iterator[tuple[Server, dict[str, str]]]:
    with tempfile.TemporaryDirectory(prefix="authpi-crash-") as tmp, database(backend, Path(tmp)) as db_url:
        env = {
            **os.environ,
            "AUTHPI_DATA_DIR": str(Path(tmp) / "data"),
            "AUTHPI_RATE_LIMITS_ENABLED": "false",
            "AUTHPI_LOG_LEVEL": "warning",
            "AUTHPI_FAULT_INJECTION": "true",
        }
        env.pop("AUTHPI_DATABASE_URL", None)
        if db_url:
            env["AUTHPI_DATABASE_URL"] = db_url
        boot = subprocess.run(
            [sys.executable, "-m", "authpi", "bootstrap"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        creds = json.loads(boot.stdout)
        server = Server(env, Path(tmp) / "server.log")
        try:
            yield server, creds
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.kill_group()


def _crash_then_retry(
    server: Server, creds: dict[str, str], path: str, body: dict[str, Any]
) -> httpx.Response:
    """Send a keyed POST that kills the server right after its commit; restart; send it again."""
    auth = (creds["key_id"], creds["key_secret"])
    key = f"crash-{uuid.uuid4().hex}"
    server.start()
    with pytest.raises(httpx.TransportError):  # the worker died before answering
        httpx.post(
            server.url + path, json=body, auth=auth, headers={"Idempotency-Key": key, **CRASH}, timeout=30
        )
    server.kill_group()
    server.start()  # same data
    retry = httpx.post(server.url + path, json=body, auth=auth, headers={"Idempotency-Key": key}, timeout=30)
    server.kill_group()
    return retry


@pytest.mark.parametrize("backend", BACKENDS)
def test_retry_after_a_crash_between_commit_and_answer_replays(backend: str) -> None:
    skip_without_postgres(backend)
    with crashable(backend) as (server, creds):
        account_path = f"/v1/accounts/{creds['account_id']}"
        auth = (creds["key_id"], creds["key_secret"])

        name = f"crash-{uuid.uuid4().hex[:8]}"
        retry = _crash_then_retry(server, creds, f"{account_path}/issuers", {"name": name})
        assert retry.status_code == 201, retry.text
        assert retry.headers.get("idempotent-replayed") == "true"
        issuer_id = retry.json()["data"]["id"]

        username = f"{name}@example.com"
        user_body = {"username_type": "email", "username": username}
        users_path = f"{account_path}/issuers/{issuer_id}/users"
        user_retry = _crash_then_retry(server, creds, users_path, user_body)
        assert user_retry.status_code == 201, user_retry.text  # not 409: the client learns the ID
        assert user_retry.headers.get("idempotent-replayed") == "true"

        server.start()
        issuers = httpx.get(f"{server.url}{account_path}/issuers", params={"q": name}, auth=auth).json()[
            "data"
        ]
        users = httpx.get(f"{server.url}{users_path}", auth=auth).json()["data"]
        server.kill_group()
        assert [i["id"] for i in issuers] == [issuer_id]  # created once, not twice
        assert [u["user_id"] for u in users] == [user_retry.json()["data"]["id"]]
