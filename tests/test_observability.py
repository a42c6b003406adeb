"""Logs, request IDs, readiness and metrics, read from the real server process.

* With ``AUTHPI_LOG_FORMAT=json`` every line the server writes, uvicorn's and the application's, from
  the parent and from each worker, is one JSON object with a UTC timestamp, level, logger, message and
  request ID; the access log names method, path (never the query string), status, duration and client.
* Every answer carries ``X-Request-Id``: the caller's when it is short and plain, else a fresh one; the
  lines logged for the request carry it, and an unhandled error's line carries the reference the
  client received.
* ``/readyz`` is 200 when the database answers and the master key opens the stored signing keys, and
  503 naming the failed check when the keys were sealed under another master key.
* ``/metrics`` (bearer-protected) aggregates both workers: token requests and sign-ins made through
  either worker are counted in full by a scrape that either worker answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from authpi_admin import AuthPIAdmin
from prometheus_client.parser import text_string_to_metric_families

from authpi.crypto.secretbox import SecretBox
from authpi.observability.logs import TextFormatter
from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import Browser, callback_params, describe, error_text, new_realm

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "metrics-" + secrets.token_hex(8)
JSON_LOGS = {"AUTHPI_LOG_FORMAT": "json", "AUTHPI_LOG_LEVEL": "info"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
GENERATED_ID = re.compile(r"^[0-9a-f]{24}$")
POOL_SIZE = {"sqlite": 8, "postgres": 10}  # per worker (storage/db.py)
EMAIL = "metrics@example.com"
PASSWORD = "correct horse battery staple"
JSON = "application/json"


@pytest.fixture(scope="module", params=BACKENDS)
def observed(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Two workers, JSON logs at info level, metrics behind a bearer token."""
    skip_without_postgres(request.param)
    env = {**JSON_LOGS, "AUTHPI_METRICS_ENABLED": "true", "AUTHPI_METRICS_TOKEN": METRICS_TOKEN}
    with run_server(request.param, env, workers=2) as running:
        yield running


# --- reading the log ---------------------------------------------------------------------------------


def log_records(server: RunningServer) -> list[dict[str, Any]]:
    """Every line of the server's output, each parsed as JSON (a line that is not fails the test)."""
    assert server.log_path is not None
    records = []
    for line in server.log_path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return records


def wait_for_records(
    server: RunningServer, request_ids: set[str], logger: str = "authpi.access", timeout: float = 10
) -> dict[str, dict[str, Any]]:
    """The ``logger`` record of each request ID (access lines are written just after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {
            record["request_id"]: record
            for record in log_records(server)
            if record.get("logger") == logger and record.get("request_id") in request_ids
        }
        if set(found) == request_ids or time.monotonic() > deadline:
            assert set(found) == request_ids, f"no {logger} line for {request_ids - set(found)}"
            return found
        time.sleep(0.05)


def startups(server: RunningServer) -> set[int]:
    """The worker processes that logged the end of their start-up."""
    return {r["pid"] for r in log_records(server) if r["message"].startswith("Application startup complete")}


def new_request_id() -> str:
    return "t-" + uuid.uuid4().hex


# --- logs and request IDs ----------------------------------------------------------------------------


def test_every_log_line_is_json_with_timestamp_level_logger_and_request_id(observed: RunningServer) -> None:
    rid = new_request_id()
    response = httpx.get(f"{observed.url}/v1/me", auth=observed.api_key, headers={"X-Request-Id": rid})
    assert response.status_code == 200
    access = wait_for_records(observed, {rid})[rid]

    # The server answers once one worker is up; give the other its moment.
    deadline = time.monotonic() + 20
    while len(startups(observed)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(startups(observed)) == 2, startups(observed)
    records = log_records(observed)
    for record in records:
        assert TIMESTAMP.match(record["timestamp"]), record
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), record
        assert record["logger"] and isinstance(record["message"], str), record
        assert "request_id" in record, record
    # One configuration everywhere: uvicorn's lines and the application's, from both workers.
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "authpi.access"} <= loggers, loggers
    assert access["level"] == "INFO" and access["request_id"] == rid


def test_access_log_names_method_path_status_duration_and_client_but_never_the_query(
    observed: RunningServer,
) -> None:
    rid = new_request_id()
    secret = "code-" + secrets.token_hex(8)
    response = httpx.get(
        f"{observed.url}/v1/me?code={secret}&token={secret}",
        auth=observed.api_key,
        headers={"X-Request-Id": rid},
    )
    assert response.status_code == 200
    access = wait_for_records(observed, {rid})[rid]
    assert access["method"] == "GET"
    assert access["path"] == "/v1/me"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["client_ip"] == "127.0.0.1"
    assert observed.log_path is not None
    assert secret not in observed.log_path.read_text()


async def test_every_answer_carries_the_request_id(observed: RunningServer, admin_of: Any) -> None:
    async with admin_of(observed) as admin:
        realm = await new_realm(admin, observed)
    requests = {
        "core": ("GET", "/v1/me", {}),
        "core error": ("GET", "/v1/no-such-route", {}),
        "discovery": ("GET", f"/{realm.id}/.well-known/openid-configuration", {}),
        "jwks": ("GET", f"/{realm.id}/jwks.json", {}),
        "hosted page": ("GET", f"/{realm.id}/authorize?client_id=nobody", {}),
        "oauth error": ("POST", f"/{realm.id}/token", {"data": {"grant_type": "password"}}),
        "docs": ("GET", "/docs", {}),
        "readyz": ("GET", "/readyz", {}),
    }
    sent: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=observed.url, auth=observed.api_key, timeout=30) as http:
        for name, (method, path, extra) in requests.items():
            rid = new_request_id()
            headers = {"X-Request-Id": rid, **extra.pop("headers", {})}
            response = await http.request(method, path, headers=headers, **extra)
            assert response.headers.get("x-request-id") == rid, (name, response.status_code, response.headers)
            sent[rid] = name
        # Without one, or with one that is too long or not plain, the server makes its own.
        generated = set()
        unusables: tuple[str | bytes | None, ...] = (None, "x" * 129, "two words", "a;b", "ünï".encode())
        for unusable in unusables:
            headers: dict[str, str | bytes] = {} if unusable is None else {"X-Request-Id": unusable}
            response = await http.get("/v1/me", headers=headers)
            assert GENERATED_ID.match(response.headers["x-request-id"]), (unusable, response.headers)
            generated.add(response.headers["x-request-id"])
        assert len(generated) == 5
    # A body refused unread (413): the answer comes before the body, so send only the head.
    rid = new_request_id()
    answer = raw_exchange(
        observed,
        f"POST /v1/me HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nX-Request-Id: {rid}\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 413 ") and f"x-request-id: {rid}\r\n".encode() in answer, answer
    sent[rid] = "core 413"
    # A head refused by the protocol (431) is answered before any ID could be read: it gets its own.
    big_head = b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    oversized = raw_exchange(observed, big_head)
    assert oversized.startswith(b"HTTP/1.1 431 "), oversized[:200]
    assert re.search(rb"\r\nx-request-id: [0-9a-f]{24}\r\n", oversized), oversized[:400]
    records = wait_for_records(observed, set(sent))
    statuses = {sent[rid]: record["status"] for rid, record in records.items()}
    assert statuses["core 413"] == 413 and statuses["oauth error"] == 400 and statuses["core"] == 200


def raw_exchange(server: RunningServer, head: bytes) -> bytes:
    """Send a request head on a raw socket and read the answer until the server closes."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


# --- readiness ---------------------------------------------------------------------------------------


async def test_readyz_checks_the_database_and_the_stored_keys(observed: RunningServer, admin_of: Any) -> None:
    async with admin_of(observed) as admin:
        realm = await new_realm(admin, observed)
    # Make sure a signing key is stored, so the key check has something to open.
    assert httpx.get(f"{realm.url}/jwks.json").status_code == 200
    response = httpx.get(f"{observed.url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "keys": "ok"}}
    assert response.headers["cache-control"] == "no-store"
    assert httpx.get(f"{observed.url}/healthz").json()["status"] == "ok"


def _store_foreign_key(server: RunningServer, issuer_id: str) -> None:
    """Store a signing key for the issuer sealed under another master key: what a database restored
    next to the wrong key file (or a wrong AUTHPI_MASTER_KEY) looks like to the server."""
    kid = str(uuid.uuid4())
    sealed = SecretBox(os.urandom(32)).seal(b'{"kty":"EC"}', f"signing_key:{kid}")
    public = json.dumps({"kty": "EC", "kid": kid, "alg": "ES256"})
    now = int(time.time() * 1000)
    if server.backend == "sqlite":
        with sqlite3.connect(server.data_dir / "authpi.db") as db:
            db.execute(
                "INSERT INTO signing_keys (kid, issuer_id, alg, public_jwk, sealed_private, created_at)"
                " VALUES (?, ?, 'ES256', ?, ?, ?)",
                (kid, issuer_id, public, sealed, now),
            )
        return
    asyncio.run(_insert_key_pg(server, kid, issuer_id, public, sealed, now))


async def _insert_key_pg(
    server: RunningServer, kid: str, issuer_id: str, public: str, sealed: str, now: int
) -> None:
    db = await asyncpg.connect(server.env["AUTHPI_DATABASE_URL"].replace("+asyncpg", ""))
    try:
        await db.execute(
            "INSERT INTO signing_keys (kid, issuer_id, alg, public_jwk, sealed_private, created_at)"
            " VALUES ($1, $2, 'ES256', $3::json, $4, $5)",
            kid,
            issuer_id,
            public,
            sealed,
            now,
        )
    finally:
        await db.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_sealed_under_another_master_key_fail_readyz_and_log_the_error_reference(backend: str) -> None:
    skip_without_postgres(backend)
    with run_server(backend, JSON_LOGS) as server:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        created = httpx.post(
            f"{server.url}/v1/accounts/{server.account_id}/issuers",
            json={"name": "sealed elsewhere"},
            auth=server.api_key,
        )
        assert created.status_code == 201, created.text
        issuer_id = created.json()["data"]["id"]
        _store_foreign_key(server, issuer_id)

        rid = new_request_id()
        response = httpx.get(f"{server.url}/{issuer_id}/jwks.json", headers={"X-Request-Id": rid})
        assert response.status_code == 500, response.text
        assert response.headers["x-request-id"] == rid
        reference = re.search(r"ref_[0-9a-f]{16}", response.json()["error_description"])
        assert reference, response.text

        error = wait_for_records(server, {rid}, logger="authpi.oidc")[rid]
        assert error["level"] == "ERROR"
        assert error["reference"] == reference.group(0) and reference.group(0) in error["message"]
        assert "InvalidTag" in error["exception"]
        assert wait_for_records(server, {rid})[rid]["status"] == 500
        # The application logged it once, with its reference: no second, bare traceback.
        assert log_records(server).count(error) == 1
        assert sum("Traceback" in json.dumps(r) for r in log_records(server)) == 1

        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "checks": {"database": "ok", "keys": "failed"}}
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, though not ready
        warning = [r for r in log_records(server) if r["logger"] == "authpi.health"]
        assert warning and warning[0]["level"] == "WARNING" and "keys failed" in warning[0]["message"]
        # Metrics are off unless enabled.
        assert httpx.get(f"{server.url}/metrics").status_code == 404


# --- metrics -----------------------------------------------------------------------------------------


def sample(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def scrape(server: RunningServer) -> tuple[str, str]:
    """One scrape on a fresh connection; returns the exposition and the request ID it was sent with."""
    rid = new_request_id()
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}", "X-Request-Id": rid}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, rid


def test_metrics_need_the_bearer_token(observed: RunningServer) -> None:
    assert httpx.get(f"{observed.url}/metrics").status_code == 401
    wrong = httpx.get(f"{observed.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    basic = httpx.get(f"{observed.url}/metrics", auth=observed.api_key)
    assert basic.status_code == 401


async def _sign_in(realm: Any, client_id: str, password: str) -> httpx.Response:
    async with Browser(realm.server_url) as browser:
        return await browser.sign_in(realm.request(client_id).url, EMAIL, password)


async def test_metrics_count_tokens_logins_and_lockouts_over_both_workers(
    observed: RunningServer, admin_of: Any
) -> None:
    async with admin_of(observed) as admin:
        realm = await new_realm(admin, observed)
        await realm.api.update({"settings": {"security": {"lockout": {"max_failures": 3, "duration": 60}}}})
        web = await realm.client()
        m2m = await realm.client("m2m")
        await realm.user(EMAIL, PASSWORD)
    before, _ = await scrape(observed)

    # Token requests on fresh connections, until both workers have answered some.
    token_ids: set[str] = set()
    for _ in range(10):
        batch = [new_request_id() for _ in range(12)]

        async def token(rid: str) -> None:
            async with httpx.AsyncClient(timeout=30, auth=(m2m.id, m2m.secret or "")) as http:
                response = await http.post(
                    f"{realm.url}/token",
                    data={"grant_type": "client_credentials"},
                    headers={"X-Request-Id": rid},
                )
            assert response.status_code == 200, response.text

        await asyncio.gather(*(token(rid) for rid in batch))
        token_ids.update(batch)
        pids = {record["pid"] for record in wait_for_records(observed, token_ids).values()}
        if len(pids) == 2:
            break
    assert len(pids) == 2, "every token request went to one worker"

    # Sign-ins: one success, then three failures, which lock the address, then one refused unchecked.
    assert "code" in callback_params(await _sign_in(realm, web.id, PASSWORD))
    for _ in range(3):
        page = await _sign_in(realm, web.id, "wrong password")
        assert page.status_code == 400 and "Incorrect" in (error_text(page) or ""), describe(page)
    locked = await _sign_in(realm, web.id, PASSWORD)
    assert "Too many failed attempts" in (error_text(locked) or "")

    # Scrapes answered by either worker all show every count.
    scraped_by: set[int] = set()
    for _ in range(40):
        after, rid = await scrape(observed)
        scraped_by.add(wait_for_records(observed, {rid})[rid]["pid"])

        def delta(name: str, **labels: str) -> float:
            return sample(after, name, **labels) - sample(before, name, **labels)  # noqa: B023

        assert delta("authpi_tokens_issued_total", grant_type="client_credentials") == len(token_ids)
        route = {"route": "/{issuer_id}/token", "method": "POST", "status": "200"}
        assert delta("authpi_http_requests_total", **route) == len(token_ids)
        latency = {"route": "/{issuer_id}/token", "method": "POST"}
        assert delta("authpi_http_request_duration_seconds_count", **latency) == len(token_ids)
        assert delta("authpi_logins_total", result="success") == 1
        assert delta("authpi_logins_total", result="failure") == 3
        assert delta("authpi_logins_total", result="locked") == 1
        assert delta("authpi_lockouts_total") == 1
        # Each worker publishes its pools; a scrape sums the live workers.
        assert sample(after, "authpi_db_pool_size", pool="main") == 2 * POOL_SIZE[observed.backend]
        # Route templates only: no issuer ID, client ID or raw path becomes a label.
        assert realm.id not in after and m2m.id not in after
        if len(scraped_by) == 2:
            break
    assert len(scraped_by) == 2, "every scrape went to one worker"


def test_metrics_directories_of_stopped_servers_are_removed_at_the_next_start(tmp_path: Any) -> None:
    """A server that died without cleaning up (kill -9) leaves its metrics directory behind; the next
    start removes it, and never a running server's. A graceful stop (SIGTERM) removes its own."""
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    abandoned = tmp_path / f"authpi-metrics-{int(exited.stdout)}-x1"
    running = tmp_path / f"authpi-metrics-{os.getpid()}-x2"
    for directory in (abandoned, running):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    env = {"TMPDIR": str(tmp_path), "AUTHPI_METRICS_ENABLED": "true"}
    with run_server("sqlite", env) as server:
        assert not abandoned.exists() and running.exists()
        (own,) = tmp_path.glob(f"authpi-metrics-{server.pid}-*")
        assert own.stat().st_mode & 0o777 == 0o700
        assert httpx.get(f"{server.url}/metrics").status_code == 200
    assert not own.exists()  # stopped by SIGTERM: its exit handlers ran
    assert running.exists()


# --- text format -------------------------------------------------------------------------------------


def test_text_lines_carry_timestamp_level_logger_request_id_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "authpi.oidc", logging.ERROR, __file__, 1, "failed %s", ("ref_1",), sys.exc_info()
        )
    record.request_id = "abc-1"
    line = TextFormatter().format(record)
    first, *rest = line.splitlines()
    stamp, level, logger, rid, message = first.split(" ", 4)
    assert TIMESTAMP.match(stamp) and level == "ERROR" and logger == "authpi.oidc"
    assert rid == "[abc-1]" and message == "failed ref_1"
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: boom"


@pytest.fixture
def admin_of() -> Any:
    """An admin SDK client for a dedicated server."""

    def open_admin(server: RunningServer) -> AuthPIAdmin:
        return AuthPIAdmin(api_key=server.api_key, base_url=server.url)

    return open_admin
