from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer, run_server

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def skip_without_postgres(backend: str) -> None:
    if backend == "postgres" and not os.environ.get("AUTHPI_TEST_DATABASE_URL"):
        pytest.skip(
            "PostgreSQL tests need AUTHPI_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)"
        )


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """The real server process, once per backend and test worker."""
    skip_without_postgres(request.param)
    with run_server(request.param) as running:
        yield running


@pytest.fixture
async def admin(server: RunningServer) -> AsyncIterator[AuthPIAdmin]:
    """The official admin SDK, resolving its account through GET /v1/me."""
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as client:
        yield client


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
