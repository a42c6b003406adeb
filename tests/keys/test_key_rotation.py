"""Signing keys: all three algorithms published, `authpi keys rotate` adds a generation that
running servers adopt, and tokens signed by the previous key stay verifiable."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from joserfc import jwt
from joserfc.jwk import KeySet

from tests import db_query
from tests.conftest import skip_without_postgres
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fast_keys_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    with run_server(request.param, {"AUTHPI_KEY_CACHE_SECONDS": "0.5"}) as running:
        yield running


def _kid(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return str(header["kid"])


async def _m2m(server: RunningServer) -> tuple[str, str, str]:
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        issuer = await admin.issuers.create({"name": "Rotation"})
        client = await admin.issuer(issuer.id).clients.create(
            {"name": "svc", "type": "m2m", "scopes": ["reports:read"]}
        )
    assert client.secret
    return issuer.id, client.id, client.secret


async def _token(http: httpx.AsyncClient, issuer_url: str, client_id: str, secret: str) -> str:
    response = await http.post(
        f"{issuer_url}/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return str(response.json()["access_token"])


async def test_rotation_publishes_a_new_generation_and_keeps_old_tokens_valid(
    fast_keys_server: RunningServer,
) -> None:
    issuer_id, client_id, secret = await _m2m(fast_keys_server)
    issuer_url = f"{fast_keys_server.url}/{issuer_id}"
    async with httpx.AsyncClient() as http:
        first = (await http.get(f"{issuer_url}/jwks.json")).json()["keys"]
        assert sorted(k["alg"] for k in first) == ["ES256", "EdDSA", "RS256"]
        assert all("d" not in k and "p" not in k for k in first), "private parts must never be published"
        old_token = await _token(http, issuer_url, client_id, secret)

        rotated = fast_keys_server.cli("keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["created"] >= 3

        # Workers reload keys in the background once their cache (0.5 s here) is stale.
        second: list[dict[str, str]] = []
        for _ in range(50):
            await asyncio.sleep(0.1)
            second = (await http.get(f"{issuer_url}/jwks.json")).json()["keys"]
            if len(second) == 6:
                break
        assert len(second) == 6, "the new generation is published and the retired one stays"
        new_token = await _token(http, issuer_url, client_id, secret)
        assert _kid(new_token) != _kid(old_token)
        assert _kid(new_token) in {k["kid"] for k in second}

        key_set = KeySet.import_key_set({"keys": second})
        for token in (old_token, new_token):
            claims = jwt.decode(token, key_set, algorithms=["ES256"]).claims
            assert claims["iss"] == issuer_url
            introspected = await http.post(
                f"{issuer_url}/introspect", data={"token": token}, auth=(client_id, secret)
            )
            assert introspected.json()["active"] is True


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def long_keys_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    with run_server(request.param, {"AUTHPI_KEY_CACHE_SECONDS": "600"}) as running:
        yield running


async def _jwks_kids(http: httpx.AsyncClient, issuer_url: str) -> set[str]:
    return {k["kid"] for k in (await http.get(f"{issuer_url}/jwks.json")).json()["keys"]}


async def _count_is(http: httpx.AsyncClient, issuer_url: str, count: int) -> bool:
    return len(await _jwks_kids(http, issuer_url)) == count


async def _until(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    for _ in range(int(seconds * 10)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return await check()


async def test_with_a_long_key_cache_rotations_and_unpublishing_are_picked_up(
    long_keys_server: RunningServer,
) -> None:
    """Keys cached for 10 minutes: a rotation still reaches the workers through its eviction, and a
    retired key leaves the JWKS at its unpublish time, which no eviction announces."""
    server = long_keys_server
    issuer_id, client_id, secret = await _m2m(server)
    issuer_url = f"{server.url}/{issuer_id}"
    async with httpx.AsyncClient() as http:
        first = await _jwks_kids(http, issuer_url)
        first_token = await _token(http, issuer_url, client_id, secret)
        assert len(first) == 3 and _kid(first_token) in first

        assert server.cli("keys", "rotate").returncode == 0
        assert await _until(lambda: _count_is(http, issuer_url, 6), 5), "the rotation's eviction reloads"
        second = await _jwks_kids(http, issuer_url) - first
        second_token = await _token(http, issuer_url, client_id, secret)
        assert _kid(second_token) in second, "the new generation signs"

        # The first generation's 45 days are up in 20 s (a `keys rotate` run takes seconds on a busy
        # machine); the next rotation's eviction loads that date, and nothing evicts at that time.
        soon = time.time() + 20
        unpublish = "UPDATE signing_keys SET unpublish_at = ? WHERE kid IN (?, ?, ?)"
        await db_query.rows(server, unpublish, int(soon * 1000), *first)
        assert server.cli("keys", "rotate").returncode == 0
        assert await _until(lambda: _count_is(http, issuer_url, 9), 5)
        assert time.time() < soon, "the machine was too slow to test this"
        assert await _until(lambda: _count_is(http, issuer_url, 6), soon - time.time() + 5), (
            "unpublished without an eviction"
        )
        third = await _jwks_kids(http, issuer_url)
        assert not third & first and second <= third
        introspected = await http.post(
            f"{issuer_url}/introspect", data={"token": first_token}, auth=(client_id, secret)
        )
        assert introspected.json()["active"] is False, "a token of an unpublished key no longer verifies"
        introspected = await http.post(
            f"{issuer_url}/introspect", data={"token": second_token}, auth=(client_id, secret)
        )
        assert introspected.json()["active"] is True
