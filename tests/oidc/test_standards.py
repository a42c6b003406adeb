"""Standards over quirks (decision 28): what a certified relying party expects of the provider.

`auth_time` in access tokens (RFC 9068 §2.2.1), token-error statuses (RFC 6749 §5.2), refused
request objects (OIDC Core §6), `id_token_hint` naming another user (OIDC Core §3.1.2.1), CORS for
browser clients, and a `WWW-Authenticate` challenge on every 401 (RFC 6750 §3, RFC 9110 §15.5.2)."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import (
    CALLBACK,
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    is_page,
    new_realm,
    realm_on,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

ADA = "ada@example.com"
GRACE = "grace@example.com"
SPA_ORIGIN = "http://127.0.0.1:5173"
EXTRA_ORIGIN = "https://console.example.com"
STRANGER = "https://evil.example.com"


def token_endpoint_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert (response.status_code, error_of(response)) == (status, error), describe(response)


# --- auth_time (RFC 9068 §2.2.1) ----------------------------------------------------------------


async def test_access_token_auth_time_is_the_sign_in_time_across_refreshes(realm: Realm) -> None:
    client = await realm.client()
    await realm.user(ADA)
    first = await realm.tokens(client, ADA)
    signed_in = unverified_claims(first["id_token"])["auth_time"]
    access = unverified_claims(first["access_token"])
    assert access["auth_time"] == signed_in <= access["iat"]

    await anyio.sleep(2.1)  # token times are whole seconds
    refreshed = await realm.refresh(client, first["refresh_token"])
    assert refreshed.status_code == 200, describe(refreshed)
    again = unverified_claims(refreshed.json()["access_token"])
    assert again["iat"] >= access["iat"] + 2
    assert again["auth_time"] == signed_in
    assert "auth_time" not in unverified_claims(refreshed.json()["refresh_token"])

    m2m = await realm.client("m2m", scopes=["reports:read"])
    machine = await realm.token(m2m, grant_type="client_credentials")
    assert "auth_time" not in unverified_claims(machine.json()["access_token"])


# --- token error statuses (RFC 6749 §5.2) -----------------------------------------------------------


async def test_unauthorized_client_is_400(realm: Realm) -> None:
    await realm.user(ADA)
    code_only = await realm.client(grant_types=["authorization_code"])
    tokens = await realm.tokens(code_only, ADA)
    assert "refresh_token" not in tokens
    m2m = await realm.client("m2m", scopes=["reports:read"])
    spa = await realm.client("spa")

    token_endpoint_error(await realm.token(code_only, grant_type="client_credentials"), "unauthorized_client")
    token_endpoint_error(
        await realm.token(code_only, grant_type="refresh_token", refresh_token="x"), "unauthorized_client"
    )
    token_endpoint_error(
        await realm.token(m2m, grant_type="authorization_code", code="x", redirect_uri="https://a.example/"),
        "unauthorized_client",
    )
    token_endpoint_error(await realm.token(spa, grant_type="client_credentials"), "unauthorized_client")
    # invalid_client stays the one 401, with its challenge.
    wrong = await realm.post("token", {"grant_type": "client_credentials"}, httpx.BasicAuth(m2m.id, "nope"))
    token_endpoint_error(wrong, "invalid_client", 401)
    assert wrong.headers["www-authenticate"] == 'Basic realm="AuthPI"'


# --- request objects and registration (OIDC Core §6, §3.1.2.6) ---------------------------------


async def test_request_and_request_uri_are_refused(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(ADA)
    await realm.code(browser, client, ADA)  # signed in: a code would be issued at once
    claims = base64.urlsafe_b64encode(json.dumps({"client_id": client.id}).encode()).decode().rstrip("=")
    cases = {
        "request": (f"eyJhbGciOiJub25lIn0.{claims}.", "request_not_supported"),
        "request_uri": ("https://rp.example.com/request.jwt", "request_uri_not_supported"),
        "registration": ('{"client_name": "RP"}', "registration_not_supported"),
    }
    for name, (value, error) in cases.items():
        auth = realm.request(client.id, **{name: value})
        params = callback_params(await browser.get(auth.url))
        assert params.get("error") == error and "code" not in params, params
        assert params["state"] == auth.state and params["iss"] == realm.url

    async with httpx.AsyncClient() as http:
        meta = (await http.get(f"{realm.url}/.well-known/openid-configuration")).json()
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False


# --- id_token_hint (OIDC Core §3.1.2.1) ---------------------------------------------------------


async def test_id_token_hint_of_another_user(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(ADA)
    grace = await realm.user(GRACE)
    graces = await realm.tokens(client, GRACE)
    code, auth = await realm.code(browser, client, ADA)  # this browser is signed in as Ada
    adas = await realm.exchange(client, code, auth)

    silent = realm.request(client.id, prompt="none", id_token_hint=graces["id_token"])
    params = callback_params(await browser.get(silent.url))
    assert params.get("error") == "login_required" and params["state"] == silent.state, params

    own = realm.request(client.id, prompt="none", id_token_hint=adas.json()["id_token"])
    params = callback_params(await browser.get(own.url))
    assert "code" in params, params

    # Without prompt=none the hinted user must sign in: the login page, not Ada's session.
    interactive = realm.request(client.id, id_token_hint=graces["id_token"])
    page = await browser.get(interactive.url)
    assert is_page(page, "login"), describe(page)
    password = await browser.submit(page, {"username": GRACE})
    params = callback_params(await browser.submit(password, {"password": PASSWORD}))
    exchanged = await realm.exchange(client, params["code"], interactive)
    assert unverified_claims(exchanged.json()["id_token"])["sub"] == grace.id

    # Signing in as someone else than the hint names ends in login_required, not in a code.
    mismatch = realm.request(client.id, id_token_hint=adas.json()["id_token"])
    page = await browser.get(mismatch.url)
    assert is_page(page, "login"), describe(page)
    password = await browser.submit(page, {"username": GRACE})
    params = callback_params(await browser.submit(password, {"password": PASSWORD}))
    assert params.get("error") == "login_required" and "code" not in params, params


async def test_invalid_id_token_hint_is_invalid_request(
    realm: Realm, browser: Browser, admin: AuthPIAdmin, server: RunningServer
) -> None:
    client = await realm.client()
    await realm.user(ADA)
    tokens = await realm.tokens(client, ADA)
    forged = tokens["id_token"][:-4] + "AAAA"
    elsewhere = await new_realm(admin, server)  # same user name, another issuer and key set
    await elsewhere.user(ADA)
    foreign = (await elsewhere.tokens(await elsewhere.client(), ADA))["id_token"]
    for hint in ("garbage", tokens["access_token"], tokens["refresh_token"], forged, foreign):
        auth = realm.request(client.id, prompt="none", id_token_hint=hint)
        params = callback_params(await browser.get(auth.url))
        assert params.get("error") == "invalid_request" and params["state"] == auth.state, params


async def test_expired_id_token_is_a_valid_hint(
    realm: Realm, browser: Browser, server: RunningServer
) -> None:
    if server.backend != "sqlite":
        pytest.skip("the hint is checked without the database; one backend covers it")
    client = await realm.client(id_token_ttl=60)
    await realm.user(ADA)
    code, auth = await realm.code(browser, client, ADA)
    hint = (await realm.exchange(client, code, auth)).json()["id_token"]
    await anyio.sleep(max(0.0, unverified_claims(hint)["exp"] - time.time()) + 1.5)
    silent = realm.request(client.id, prompt="none", id_token_hint=hint)
    params = callback_params(await browser.get(silent.url))
    assert "code" in params, params


# --- CORS (decision 28) -------------------------------------------------------------------------


async def preflight(url: str, origin: str, method: str = "POST") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with httpx.AsyncClient() as http:
        return await http.options(url, headers=headers)


def assert_cors(response: httpx.Response, origin: str) -> None:
    assert response.headers.get("access-control-allow-origin") == origin, describe(response)
    assert "origin" in response.headers.get("vary", "").lower()
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()


def assert_no_cors(response: httpx.Response) -> None:
    assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers
    assert "origin" in response.headers.get("vary", "").lower()


async def test_browser_endpoints_answer_cors_for_registered_origins(realm: Realm, admin: AuthPIAdmin) -> None:
    spa = await realm.client("spa", redirect_uris=[CALLBACK, f"{SPA_ORIGIN}/callback"])
    web = await realm.client(redirect_uris=["https://portal.example.com/cb"], allowed_origins=[EXTRA_ORIGIN])
    await realm.user(ADA)
    endpoints = {"token": "POST", "userinfo": "GET", "revoke": "POST", "introspect": "POST"}

    for endpoint, method in endpoints.items():
        url = f"{realm.url}/{endpoint}"
        for origin in (SPA_ORIGIN, EXTRA_ORIGIN):
            answer = await preflight(url, origin, method)
            assert answer.status_code == 204, describe(answer)
            assert answer.headers["access-control-allow-origin"] == origin
            assert method in answer.headers["access-control-allow-methods"]
            allowed_headers = answer.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed_headers and "content-type" in allowed_headers
            assert int(answer.headers["access-control-max-age"]) > 0
            assert "origin" in answer.headers["vary"].lower()
        # A web client's redirect URI is no browser origin; strangers get nothing.
        for origin in ("https://portal.example.com", STRANGER):
            answer = await preflight(url, origin, method)
            assert answer.status_code == 204
            assert_no_cors(answer)

    async with httpx.AsyncClient() as http:
        # Real requests, errors included, carry the headers a browser needs to read them.
        tokens = await realm.tokens(spa, ADA)
        info = await http.get(
            f"{realm.url}/userinfo",
            headers={"Origin": SPA_ORIGIN, "Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert info.status_code == 200 and info.json()["sub"]
        assert_cors(info, SPA_ORIGIN)
        failed = await http.post(
            f"{realm.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": spa.id},
            headers={"Origin": EXTRA_ORIGIN},
        )
        token_endpoint_error(failed, "invalid_grant")
        assert_cors(failed, EXTRA_ORIGIN)
        denied = await http.post(
            f"{realm.url}/introspect", data={"token": "x"}, headers={"Origin": SPA_ORIGIN}
        )
        token_endpoint_error(denied, "invalid_client", 401)
        assert_cors(denied, SPA_ORIGIN)
        assert denied.headers["www-authenticate"].startswith("Basic ")
        stranger = await http.get(
            f"{realm.url}/userinfo", headers={"Origin": STRANGER, "Authorization": "Bearer x"}
        )
        assert stranger.status_code == 401
        assert_no_cors(stranger)

        # Core API writes take effect at once: a removed origin is refused, a new client's allowed.
        await realm.api.clients.update(web.id, {"settings": {"openid": {"allowed_origins": []}}})
        assert_no_cors(await preflight(f"{realm.url}/token", EXTRA_ORIGIN))
        fresh = "https://fresh.example.com"
        await realm.client("spa", redirect_uris=[f"{fresh}/cb"])
        assert (await preflight(f"{realm.url}/token", fresh)).headers["access-control-allow-origin"] == fresh
        await realm.api.clients.delete(spa.id)
        assert_no_cors(await preflight(f"{realm.url}/token", SPA_ORIGIN))

        # Another issuer's origins are not this issuer's.
        other = await admin.issuers.create({"name": "cors-other"})
        assert_no_cors(await preflight(f"{realm.server_url}/{other.id}/token", fresh))


@pytest.fixture(scope="module", params=BACKENDS)
def long_cache_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server that trusts cached configuration rows for a minute unless a write evicts them."""
    skip_without_postgres(request.param)
    with run_server(request.param, {"AUTHPI_CONFIG_CACHE_SECONDS": "60"}) as running:
        yield running


async def disable_behind_the_servers_back(server: RunningServer, client_id: str) -> None:
    """Change the database directly, so no Core API write evicts anything."""
    statement = "UPDATE clients SET status = 'disabled' WHERE id = "
    if server.backend == "sqlite":
        with sqlite3.connect(Path(server.env["AUTHPI_DATA_DIR"]) / "authpi.db") as db:
            db.execute(statement + "?", (client_id,))
        return
    import asyncpg

    db = await asyncpg.connect(server.env["AUTHPI_DATABASE_URL"].replace("+asyncpg", ""))
    try:
        await db.execute(statement + "$1", client_id)
    finally:
        await db.close()


async def test_issuer_origins_are_cached_not_queried_per_request(long_cache_server: RunningServer) -> None:
    async with realm_on(long_cache_server) as realm:
        spa = await realm.client("spa", redirect_uris=[f"{SPA_ORIGIN}/callback"])
        token = f"{realm.url}/token"
        assert (await preflight(token, SPA_ORIGIN)).headers["access-control-allow-origin"] == SPA_ORIGIN
        await disable_behind_the_servers_back(long_cache_server, spa.id)
        for _ in range(3):  # answered from the per-issuer cache: the database is not asked again
            cached = await preflight(token, SPA_ORIGIN)
            assert cached.headers["access-control-allow-origin"] == SPA_ORIGIN
        # Any Core API write to the issuer's clients evicts the set; it is then read afresh.
        await realm.client()
        assert_no_cors(await preflight(token, SPA_ORIGIN))


async def test_discovery_and_jwks_answer_any_origin(realm: Realm) -> None:
    async with httpx.AsyncClient() as http:
        for path in ("/.well-known/openid-configuration", "/jwks.json"):
            got = await http.get(f"{realm.url}{path}", headers={"Origin": STRANGER})
            assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "*"
            answer = await preflight(f"{realm.url}{path}", STRANGER, "GET")
            assert answer.status_code == 204, describe(answer)
            assert answer.headers["access-control-allow-origin"] == "*"


# --- WWW-Authenticate on every 401 ----------------------------------------------------------------


def challenge_params(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


async def test_every_401_carries_its_challenge(realm: Realm, server: RunningServer) -> None:
    client = await realm.client()
    m2m = await realm.client("m2m", scopes=["reports:read"])
    await realm.user(ADA)
    tokens = await realm.tokens(client, ADA)
    machine = (await realm.token(m2m, grant_type="client_credentials")).json()["access_token"]

    async def userinfo(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient() as http:
            return await http.get(f"{realm.url}/userinfo", headers=headers)

    missing = await userinfo(None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f'Bearer realm="{realm.url}"'  # no error (§3.1)
    for bad in ("not-a-token", tokens["id_token"], tokens["refresh_token"]):
        refused = await userinfo(bad)
        assert refused.status_code == 401
        header = refused.headers["www-authenticate"]
        assert header.startswith("Bearer ")
        params = challenge_params(header)
        assert params["realm"] == realm.url and params["error"] == "invalid_token", header
        assert params["error_description"]
    scope = await userinfo(machine)
    assert scope.status_code == 403
    params = challenge_params(scope.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope" and params["scope"] == "openid"

    bodies: dict[str, dict[str, Any]] = {
        "token": {"grant_type": "client_credentials"},
        "revoke": {"token": "x"},
        "introspect": {"token": "x"},
    }
    for endpoint, body in bodies.items():
        for auth, extra in ((httpx.BasicAuth(client.id, "wrong"), {}), (None, {"client_id": "c_nobody"})):
            answer = await realm.post(endpoint, {**body, **extra}, auth)
            token_endpoint_error(answer, "invalid_client", 401)
            assert answer.headers["www-authenticate"] == 'Basic realm="AuthPI"', endpoint
        posted = await realm.post(endpoint, {**body, "client_id": client.id, "client_secret": "wrong"})
        token_endpoint_error(posted, "invalid_client", 401)
        assert posted.headers["www-authenticate"].startswith("Basic ")

    async with httpx.AsyncClient(base_url=server.url) as http:
        for auth in (None, httpx.BasicAuth("key_0", "nope")):
            core = await http.get("/v1/me", auth=auth)
            assert core.status_code == 401
            assert core.headers["www-authenticate"] == 'Basic realm="AuthPI"'
