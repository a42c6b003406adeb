"""PostgreSQL unreachable for the server (stopped, then hung): requests answer 503 + Retry-After
within a second in every envelope, /readyz fails, cached protocol paths keep serving, the log holds
one line per outage instead of a traceback per request, and service resumes alone."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from authpi.storage.errors import DatabaseUnavailable, is_busy, is_transient, is_unavailable
from tests.conftest import skip_without_postgres
from tests.core.conftest import assert_error_envelope
from tests.faultproxy import FaultProxy
from tests.harness import RunningServer, database, run_server
from tests.oidc.helpers import Realm, realm_on

# Short timeouts so a hung database is noticed quickly; caches that expire within the test, so the
# cached paths are served from stale entries while the database is away.
OUTAGE_ENV = {
    "AUTHPI_DATABASE_CONNECT_TIMEOUT": "0.5",
    "AUTHPI_DATABASE_STATEMENT_TIMEOUT": "1",
    "AUTHPI_CONFIG_CACHE_SECONDS": "0.5",
    "AUTHPI_KEY_CACHE_SECONDS": "1",
}
pytestmark = pytest.mark.anyio
QUICK = 1.0
SPA_ORIGIN = "http://localhost:5173"  # seconds within which every request must be answered during the outage


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[RunningServer, FaultProxy]]:
    """A server whose only way to its PostgreSQL database is a proxy the test controls."""
    skip_without_postgres("postgres")
    admin_url = make_url(os.environ["AUTHPI_TEST_DATABASE_URL"])
    with (
        tempfile.TemporaryDirectory(prefix="authpi-outage-") as tmp,
        database("postgres", Path(tmp)) as url,
        FaultProxy(admin_url.host or "127.0.0.1", admin_url.port or 5432) as proxy,
    ):
        assert url is not None
        through_proxy = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        with run_server("postgres", {**OUTAGE_ENV, "AUTHPI_DATABASE_URL": through_proxy}) as server:
            yield server, proxy


async def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def _assert_retryable_503(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < QUICK, elapsed


async def _until_breaker_open(http: httpx.AsyncClient, server: RunningServer) -> None:
    """The first requests after a hang wait out the connect/statement timeouts; then none does."""
    deadline = time.monotonic() + 15
    while (await http.get(f"{server.url}/v1/me", auth=server.api_key)).status_code != 503:
        assert time.monotonic() < deadline, "the outage was never noticed"


async def _until_served(http: httpx.AsyncClient, server: RunningServer) -> float:
    started = time.monotonic()
    while (await http.get(f"{server.url}/v1/me", auth=server.api_key)).status_code != 200:
        assert time.monotonic() - started < 15, "service did not resume"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def _log_lines(server: RunningServer, text: str) -> int:
    assert server.log_path is not None
    return sum(text in line for line in server.log_path.read_text().splitlines())


@pytest.mark.parametrize("fault", ["down", "frozen"])
async def test_database_outage_is_503_with_cached_paths_serving_and_recovers_alone(
    proxied: tuple[RunningServer, FaultProxy], fault: str
) -> None:
    server, proxy = proxied
    async with realm_on(server) as realm:
        m2m = await realm.client("m2m", scopes=["reports:read"])
        web = await realm.client("web")
        spa = await realm.client("spa", redirect_uris=[f"{SPA_ORIGIN}/callback"])
        assert (await realm.token(m2m, grant_type="client_credentials")).status_code == 200
    discovery = f"{realm.url}/.well-known/openid-configuration"
    jwks = f"{realm.url}/jwks.json"
    unreachable_before = _log_lines(server, "database unreachable")
    back_before = _log_lines(server, "database reachable again")

    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(discovery)).status_code == 200
        assert (await http.get(jwks)).status_code == 200
        # Cache the SPA client and the issuer's browser origins.
        refused = await _spa_exchange(http, realm, spa.id)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
        assert refused.headers["access-control-allow-origin"] == SPA_ORIGIN
        getattr(proxy, {"down": "down", "frozen": "freeze"}[fault])()
        try:
            await _until_breaker_open(http, server)
            await asyncio.sleep(1.2)  # every cache entry is past its freshness now
            await _assert_outage(http, server, realm, m2m, web)
            # The token endpoint answers the OAuth error, with CORS headers so that browser code
            # can read it and its Retry-After.
            exchange, elapsed = await _timed(_spa_exchange(http, realm, spa.id))
            _assert_retryable_503(exchange, elapsed)
            assert exchange.json()["error"] == "temporarily_unavailable"
            assert exchange.headers["access-control-allow-origin"] == SPA_ORIGIN
        finally:
            proxy.forward()
        waited = await _until_served(http, server)
        assert waited < 10, waited
        assert (await http.get(f"{server.url}/readyz")).status_code == 200

    assert _log_lines(server, "database unreachable") == unreachable_before + 1
    assert _log_lines(server, "database reachable again") == back_before + 1
    assert server.tracebacks() == []


async def _spa_exchange(http: httpx.AsyncClient, realm: Realm, client_id: str) -> httpx.Response:
    """A browser's code exchange: the client is cached, the code must be looked up in the database."""
    form = {
        "grant_type": "authorization_code",
        "code": "not-a-real-code",
        "redirect_uri": f"{SPA_ORIGIN}/callback",
        "code_verifier": "v" * 43,
        "client_id": client_id,
    }
    return await http.post(f"{realm.url}/token", data=form, headers={"Origin": SPA_ORIGIN})


async def _assert_outage(
    http: httpx.AsyncClient, server: RunningServer, realm: Realm, m2m: Any, web: Any
) -> None:
    # Core API: the error envelope, retryable, for every one of a burst of concurrent requests.
    core = await asyncio.gather(
        *(_timed(http.get(f"{server.url}/v1/me", auth=server.api_key)) for _ in range(20))
    )
    for response, elapsed in core:
        _assert_retryable_503(response, elapsed)
        assert_error_envelope(response.json(), "temporarily_unavailable")
        assert response.json()["retryable"] is True
    created, elapsed = await _timed(
        http.post(
            f"{server.url}/v1/accounts/{server.account_id}/issuers", json={"name": "x"}, auth=server.api_key
        )
    )
    _assert_retryable_503(created, elapsed)

    # IdP API: an error page for the hosted pages (the OAuth JSON error: see the SPA exchange).
    page, elapsed = await _timed(http.get(realm.request(web.id).url))
    _assert_retryable_503(page, elapsed)
    assert page.headers["content-type"].startswith("text/html")

    # Cached paths keep serving: client_credentials (issuer, client and keys cached), documents.
    issued, elapsed = await _timed(realm.token(m2m, grant_type="client_credentials"))
    assert issued.status_code == 200, issued.text
    assert elapsed < QUICK
    for document in (f"{realm.url}/.well-known/openid-configuration", f"{realm.url}/jwks.json"):
        assert (await http.get(document)).status_code == 200, document

    ready, elapsed = await _timed(http.get(f"{server.url}/readyz"))
    assert ready.status_code == 503 and elapsed < QUICK, (ready.status_code, elapsed)
    assert (await http.get(f"{server.url}/healthz")).status_code == 200


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def test_failures_are_told_apart_busy_unreachable_or_a_bug() -> None:
    lost = DBAPIError("SELECT 1", {}, _DriverError("08006"))
    cancelled = DBAPIError("SELECT 1", {}, _DriverError("57014"))
    unique = DBAPIError("INSERT …", {}, _DriverError("23505"))
    assert is_unavailable(lost) and not is_busy(lost)
    assert is_busy(cancelled) and not is_unavailable(cancelled)  # the server answered: busy, not gone
    assert not is_transient(unique)
    for raw in (ConnectionRefusedError(), TimeoutError(), DatabaseUnavailable()):
        assert is_unavailable(raw)
    assert is_busy(PoolTimeout("QueuePool limit reached")) and not is_unavailable(PoolTimeout())
    # Another service's error caused by a socket error is not the database's.
    try:
        raise RuntimeError("redis went away") from ConnectionRefusedError()
    except RuntimeError as other:
        assert not is_transient(other)
