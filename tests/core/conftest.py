"""Fixtures shared by the Core API conformance tests: raw HTTP, fresh issuers, extra API keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.generated.models import CreateApiKeyResponse, Issuer

from tests.harness import RunningServer

KeyMaker = Callable[..., Awaitable[CreateApiKeyResponse]]
ClientFactory = Callable[..., AbstractAsyncContextManager[AuthPIAdmin]]


@pytest.fixture
async def raw(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client authenticated with the bootstrap key, for wire-level assertions."""
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as client:
        yield client


@pytest.fixture
def account_path(server: RunningServer) -> str:
    return f"/v1/accounts/{server.account_id}"


@pytest.fixture
async def issuer(admin: AuthPIAdmin, unique: str) -> Issuer:
    """A fresh issuer owned by this test only."""
    return await admin.issuers.create({"name": f"fixture-{unique}"})


@pytest.fixture
def make_key(admin: AuthPIAdmin, unique: str) -> KeyMaker:
    """Create an account API key with the given scopes (and any other create fields)."""

    async def make(scopes: list[str], **extra: Any) -> CreateApiKeyResponse:
        body: dict[str, Any] = {"name": f"key-{unique}", "restrictions": {"scopes": scopes}, **extra}
        return await admin.api_keys.create(body)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client_for(server: RunningServer) -> ClientFactory:
    """An SDK client for another credential (no retries, so errors surface at once)."""

    @asynccontextmanager
    async def open_client(
        key_id: str, secret: str, *, account_id: str | None = None
    ) -> AsyncIterator[AuthPIAdmin]:
        async with AuthPIAdmin(
            api_key=(key_id, secret), base_url=server.url, account_id=account_id, retries=False
        ) as client:
            yield client

    return open_client


@pytest.fixture(scope="session")
def other_account(server: RunningServer) -> dict[str, str]:
    """A second account on the same database, created with the CLI (decision 26)."""
    done = server.cli("accounts", "create", "--name", "Other account")
    assert done.returncode == 0, done.stderr
    created: dict[str, str] = json.loads(done.stdout)
    assert created["account_id"] != server.account_id
    return created


def assert_error_envelope(body: dict[str, Any], error: str | None = None) -> None:
    """Every Core API error body has the A.10 keys with the right types."""
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert isinstance(body["reference"], str) and body["reference"]
    assert isinstance(body["retryable"], bool)
    if error is not None:
        assert body["error"] == error, body


def field_names(fields: list[dict[str, Any]] | None) -> set[str]:
    return {f["field"] for f in fields or []}
