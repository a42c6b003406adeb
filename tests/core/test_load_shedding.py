"""Overload fails fast: beyond AUTHPI_MAX_IN_FLIGHT a worker answers 503 + Retry-After at once (health
checks excepted), and a request that finds the database pool exhausted answers 503 + Retry-After after
the short pool timeout instead of queueing for 30 s."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.conftest import assert_error_envelope
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio
MAX_IN_FLIGHT = 40
POOL_TIMEOUT = 0.5
POOL_CONNECTIONS = {"sqlite": 16, "postgres": 20}  # pool_size + max_overflow of one worker


@pytest.fixture(scope="module", params=BACKENDS)
def shedding(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    env = {"AUTHPI_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "AUTHPI_DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT)}
    with run_server(request.param, env) as server:
        yield server


@asynccontextmanager
async def held_requests(server: RunningServer, count: int) -> AsyncIterator[None]:
    """``count`` requests in flight: chunked bodies that start and never finish."""
    port = int(server.url.rsplit(":", 1)[1])
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /v1/accounts/{server.account_id}/issuers HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n".encode()
        )
        await writer.drain()
        writers.append(writer)
    await asyncio.sleep(0.5)  # the server has taken every one of them in
    try:
        yield
    finally:
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.5)


async def test_requests_beyond_the_in_flight_cap_are_refused_at_once(shedding: RunningServer) -> None:
    server = shedding
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=10) as http:
        async with held_requests(server, MAX_IN_FLIGHT):
            started = time.monotonic()
            discovery = "/i_x/.well-known/openid-configuration"
            core, idp = await asyncio.gather(http.get("/v1/me"), http.get(discovery))
            assert time.monotonic() - started < 1
            for response in (core, idp):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "1"
            assert_error_envelope(core.json(), "temporarily_unavailable")
            assert core.json()["retryable"] is True
            assert idp.json()["error"] == "temporarily_unavailable"
            # Health checks are never shed.
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/v1/me")).status_code == 200
    assert server.tracebacks() == []


@asynccontextmanager
async def writes_blocked(server: RunningServer) -> AsyncIterator[None]:
    """Another database client holds the write lock on issuers until the block ends."""
    if server.backend == "sqlite":
        blocker = sqlite3.connect(server.data_dir / "authpi.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    conn = await asyncpg.connect(server.env["AUTHPI_DATABASE_URL"])
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE issuers IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_an_exhausted_pool_answers_503_after_the_pool_timeout(shedding: RunningServer) -> None:
    server = shedding
    extra = 6
    path = f"/v1/accounts/{server.account_id}/issuers"

    async def create(http: httpx.AsyncClient, n: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await http.post(path, json={"name": f"pool-{n}"})
        return response, time.monotonic() - started

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=10, limits=limits) as http:
        async with writes_blocked(server):
            count = POOL_CONNECTIONS[server.backend] + extra
            pending = [asyncio.ensure_future(create(http, n)) for n in range(count)]
            await asyncio.sleep(POOL_TIMEOUT + 2)  # the blocked writes hold every pooled connection
            refused = [task.result() for task in pending if task.done()]
        answered = await asyncio.gather(*pending)
    assert len(refused) >= extra, [r.status_code for r, _ in answered]
    for response, elapsed in refused:
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert_error_envelope(response.json(), "temporarily_unavailable")
        assert elapsed < POOL_TIMEOUT + 1.5, elapsed
    created = [response for response, _ in answered if response.status_code == 201]
    assert len(created) + len(refused) == len(answered), [r.status_code for r, _ in answered]
    assert created, "the writes holding the pool complete once the lock is released"
    assert server.tracebacks() == []
