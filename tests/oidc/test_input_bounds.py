"""Bounds on what unauthenticated protocol input can do: /authorize is rate-limited per IP, its
parameters are capped, and what a pending request stores is bounded; NUL characters in decoded
input (query, Basic credentials) are a 400 on both backends, never a database error."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Iterator
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import CALLBACK, Realm, callback_params, describe, error_of, realm_on

pytestmark = pytest.mark.anyio

AUTHORIZE_LIMIT = 10
MAX_STORED_BYTES = 8 * 1024  # what one pending authorization request may store


@pytest.fixture(scope="module", params=BACKENDS)
def limited_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server that allows 10 authorization requests a minute per IP."""
    skip_without_postgres(request.param)
    env = {"AUTHPI_RATE_LIMITS_ENABLED": "true", "AUTHPI_RATE_LIMIT_AUTHORIZE": f"{AUTHORIZE_LIMIT}/minute"}
    with run_server(request.param, env) as running:
        yield running


async def pending_requests(server: RunningServer) -> tuple[int, int]:
    """Rows in authorization_requests and the total size of their stored parameters."""
    query = "SELECT count(*), coalesce(sum(length(CAST(params AS TEXT))), 0) FROM authorization_requests"
    if server.backend == "sqlite":
        with sqlite3.connect(server.data_dir / "authpi.db") as db:
            rows, size = db.execute(query).fetchone()
        return int(rows), int(size)
    conn = await asyncpg.connect(server.env["AUTHPI_DATABASE_URL"])
    try:
        record = await conn.fetchrow(query)
    finally:
        await conn.close()
    assert record is not None
    return int(record[0]), int(record[1])


def authorize_url(realm: Realm, params: list[tuple[str, str]], **replace: str) -> str:
    kept = [(name, value) for name, value in params if name not in replace]
    return f"{realm.url}/authorize?{urlencode(kept + list(replace.items()))}"


def basic_request(client_id: str) -> list[tuple[str, str]]:
    return [
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid profile email"),
        ("state", "state"),
        ("nonce", "nonce"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ]


# Resources near their length cap, registered on the clients of these tests (only registered
# resources are accepted, so only they can make a pending request large).
RESOURCES = [f"https://api{i}.example/{'r' * 490}" for i in range(10)]


def maximal_request(realm: Realm, client_id: str, n: int, resources: int = 5) -> str:
    """An authorization URL with every stored parameter near its cap (and ``resources`` resources)."""
    return authorize_url(
        realm,
        basic_request(client_id) + [("resource", resource) for resource in RESOURCES[:resources]],
        scope="openid profile email " + " ".join(f"unknown{i}" for i in range(150)),
        state=f"{n}-" + "s" * 2000,
        nonce="n" * 512,
        login_hint="h" * 300 + "@example.com",
    )


# --- /authorize: rate limit and stored size ----------------------------------------------------------


async def test_an_authorize_burst_is_rate_limited_and_storage_stays_bounded(
    limited_server: RunningServer,
) -> None:
    async with realm_on(limited_server) as realm:
        client = await realm.client("spa", allowed_resources=RESOURCES)
        rows_before, _ = await pending_requests(limited_server)
        async with httpx.AsyncClient(timeout=60) as http:
            answers = await asyncio.gather(
                *(http.get(maximal_request(realm, client.id, n)) for n in range(4 * AUTHORIZE_LIMIT))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303] * AUTHORIZE_LIMIT + [429] * (3 * AUTHORIZE_LIMIT), statuses
    for limited in (a for a in answers if a.status_code == 429):
        assert limited.headers["content-type"].startswith("text/html")
        assert "location" not in limited.headers
        assert 0 < int(limited.headers["retry-after"]) <= 60
    for accepted in (a for a in answers if a.status_code == 303):
        assert "/login?request=" in accepted.headers["location"], describe(accepted)
    rows, size = await pending_requests(limited_server)
    assert rows - rows_before <= AUTHORIZE_LIMIT
    assert size <= rows * MAX_STORED_BYTES, (rows, size)


CAPS = [
    ("login_hint", "h" * 321),
    ("state", "s" * 2049),
    ("nonce", "n" * 513),
    ("scope", "openid " + "x" * 2048),
    ("code_challenge", "c" * 129),
    ("prompt", "login " * 20),
    ("max_age", "1" * 11),
    ("org", "o" * 65),
    ("resource", "https://api.example/" + "r" * 600),
]


@pytest.mark.parametrize(("name", "value"), CAPS, ids=[name for name, _ in CAPS])
async def test_over_long_authorize_parameters_are_invalid_request(
    realm: Realm, name: str, value: str
) -> None:
    client = await realm.client("spa")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(authorize_url(realm, basic_request(client.id), **{name: value}))
    params = callback_params(response)
    assert params["error"] == "invalid_request", params
    assert name in params["error_description"]
    assert params.get("state") == (None if name == "state" else "state")  # an over-long one is not echoed


async def test_parameters_at_their_caps_fit_in_one_pending_request(realm: Realm) -> None:
    client = await realm.client("spa", allowed_resources=RESOURCES)
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(maximal_request(realm, client.id, 0))
    assert response.status_code == 303 and "/login?request=" in response.headers["location"], describe(
        response
    )


async def test_a_request_storing_too_much_is_refused(realm: Realm) -> None:
    """Every value within its cap, but all of them at once would store more than one request may."""
    client = await realm.client("spa", allowed_resources=RESOURCES)
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(maximal_request(realm, client.id, 0, resources=10))
    params = callback_params(response)
    assert params["error"] == "invalid_request" and "too large" in params["error_description"], params


# --- NUL characters ---------------------------------------------------------------------------------


def basic_header(client_id: str, secret: str = "secret") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


NUL_CLIENT_IDS = ["a%00b", "a\x00b"]


@pytest.mark.parametrize("endpoint", ["token", "revoke", "introspect"])
@pytest.mark.parametrize("client_id", NUL_CLIENT_IDS, ids=["percent-encoded", "raw"])
async def test_nul_in_a_basic_client_id_is_a_400(
    server: RunningServer, realm: Realm, endpoint: str, client_id: str
) -> None:
    tracebacks = len(server.tracebacks())
    form = {"grant_type": "client_credentials", "token": "x"}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{realm.url}/{endpoint}", data=form, headers=basic_header(client_id))
    assert (response.status_code, error_of(response)) == (400, "invalid_request"), describe(response)
    assert len(server.tracebacks()) == tracebacks


@pytest.mark.parametrize("page", ["login", "consent", "select-account", "signup"])
async def test_nul_in_a_hosted_page_query_is_a_400(server: RunningServer, realm: Realm, page: str) -> None:
    tracebacks = len(server.tracebacks())
    async with httpx.AsyncClient(timeout=30) as http:
        for query in ("request=%00", "request=abc%00def", "login_hint=%00&request=x"):
            response = await http.get(f"{realm.url}/{page}?{query}")
            assert (response.status_code, error_of(response)) == (400, "invalid_request"), describe(response)
    assert len(server.tracebacks()) == tracebacks
