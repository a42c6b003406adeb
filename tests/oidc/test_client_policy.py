"""Per-client audience and scope policy (decision 34): a `resource` must be registered in the
client's `settings.openid.allowed_resources` at /authorize and at /token (every grant), never a
client ID; requested scopes are cut down to the client's `scopes` (the OIDC scopes aside); the
Core API validates, normalises and round-trips `allowed_resources` and `allowed_origins`."""

from __future__ import annotations

from typing import Any

import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ValidationError

from tests.oidc.helpers import (
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

EMAIL = "ada@example.com"
API = "https://api.example.com/"
FILES = "urn:example:files"


def problems(exc: ValidationError) -> dict[str, str]:
    return {f["field"]: f["code"] for f in exc.fields}


# --- Core API: configuration ------------------------------------------------------------------------


async def test_allowlists_round_trip_through_the_admin_sdk(realm: Realm) -> None:
    created = await realm.client(
        "spa",
        allowed_resources=[API, FILES, API],
        allowed_origins=["https://App.Example.com:443/", "http://127.0.0.1:5173", "https://app.example.com"],
    )
    openid = created.settings["openid"]
    assert openid["allowed_resources"] == [API, FILES]
    # Stored as browsers send Origin: lower case, no default port, no trailing slash, no duplicates.
    assert openid["allowed_origins"] == ["https://app.example.com", "http://127.0.0.1:5173"]
    fetched = await realm.api.clients.get(created.id)
    assert fetched.settings == created.settings

    updated = await realm.api.clients.update(
        created.id, {"settings": {"openid": {"allowed_resources": [FILES]}}}
    )
    assert updated.settings["openid"]["allowed_resources"] == [FILES]
    assert updated.settings["openid"]["allowed_origins"] == openid["allowed_origins"]  # per-key merge
    assert (await realm.api.clients.get(created.id)).settings == updated.settings

    plain = await realm.client()
    assert plain.settings["openid"]["allowed_resources"] == []
    assert plain.settings["openid"]["allowed_origins"] == []


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        ("allowed_resources", "CLIENT_ID", "invalid_uri"),  # an aud must never name a client
        ("allowed_resources", "api.example.com/v1", "invalid_uri"),
        ("allowed_resources", "/relative", "invalid_uri"),
        ("allowed_resources", "https://api.example.com/#frag", "fragment"),
        ("allowed_resources", "https://*.example.com/", "wildcard"),
        ("allowed_resources", 42, "invalid_type"),
        ("allowed_origins", "https://app.example.com/path", "invalid_origin"),
        ("allowed_origins", "https://app.example.com?x=1", "invalid_origin"),
        ("allowed_origins", "https://*.example.com", "invalid_origin"),
        ("allowed_origins", "ftp://app.example.com", "invalid_origin"),
        ("allowed_origins", "null", "invalid_origin"),
        ("allowed_origins", "https://user@app.example.com", "invalid_origin"),
        ("allowed_origins", "http://app.example.com", "insecure_uri"),
    ],
)
async def test_invalid_allowlist_entries_are_refused_field_by_field(
    realm: Realm, key: str, value: Any, code: str
) -> None:
    other = await realm.client()
    entry = other.id if value == "CLIENT_ID" else value
    for attempt in ("create", "update"):
        with pytest.raises(ValidationError) as exc:
            if attempt == "create":
                await realm.client(**{key: [entry]})
            else:
                await realm.api.clients.update(other.id, {"settings": {"openid": {key: [entry]}}})
        assert exc.value.status_code == 422, attempt
        assert problems(exc.value) == {f"settings.openid.{key}": code}, (attempt, exc.value.fields)


# --- resources at /authorize and /token -----------------------------------------------------------


async def test_client_credentials_refuses_unregistered_resources(realm: Realm) -> None:
    victim = await realm.client()
    m2m = await realm.client("m2m", scopes=["reports:read"], allowed_resources=[API])
    for resource in (victim.id, "https://elsewhere.example.com/", f"{API}x"):
        refused = await realm.token(m2m, grant_type="client_credentials", resource=resource)
        assert refused.status_code == 400 and error_of(refused) == "invalid_target", describe(refused)
    both = await realm.token(m2m, grant_type="client_credentials", resource=[API, victim.id])
    assert error_of(both) == "invalid_target", describe(both)

    granted = await realm.token(m2m, grant_type="client_credentials", resource=API)
    assert granted.status_code == 200, describe(granted)
    assert unverified_claims(granted.json()["access_token"])["aud"] == API
    default = await realm.token(m2m, grant_type="client_credentials")
    assert unverified_claims(default.json()["access_token"])["aud"] == m2m.id


async def test_authorize_refuses_unregistered_resources_by_redirect(realm: Realm, browser: Browser) -> None:
    victim = await realm.client()
    client = await realm.client(allowed_resources=[API])
    await realm.user(EMAIL)
    for resource in (victim.id, "https://elsewhere.example.com/"):
        auth = realm.request(client.id, resource=resource)
        params = callback_params(await browser.get(auth.url))
        assert params["error"] == "invalid_target" and params["state"] == auth.state, params

    code, auth = await realm.code(browser, client, EMAIL, resource=API)
    tokens = await realm.exchange(client, code, auth)
    assert tokens.status_code == 200, describe(tokens)
    assert unverified_claims(tokens.json()["access_token"])["aud"] == API


async def test_token_grants_recheck_the_current_allowlist(realm: Realm, browser: Browser) -> None:
    client = await realm.client(allowed_resources=[API, FILES])
    await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL, resource=API)
    first = await realm.exchange(client, code, auth)
    assert first.status_code == 200, describe(first)
    refresh = first.json()["refresh_token"]

    # The resource is taken off the client: the grant made before does not keep it.
    await realm.api.clients.update(client.id, {"settings": {"openid": {"allowed_resources": [FILES]}}})
    for extra in ({}, {"resource": API}):
        refused = await realm.refresh(client, refresh, **extra)
        assert refused.status_code == 400 and error_of(refused) == "invalid_target", describe(refused)

    code, auth = await realm.code(browser, client, EMAIL, resource=FILES)
    await realm.api.clients.update(client.id, {"settings": {"openid": {"allowed_resources": [API]}}})
    exchanged = await realm.exchange(client, code, auth)
    assert error_of(exchanged) == "invalid_target", describe(exchanged)


# --- scopes -----------------------------------------------------------------------------------------


async def test_authorize_grants_only_the_clients_scopes(realm: Realm, admin: AuthPIAdmin) -> None:
    await admin.issuers.update(realm.id, {"available_scopes": ["reports:read", "billing:write"]})
    await realm.user(EMAIL)
    scope = "openid email offline_access reports:read billing:write"

    bare = await realm.client()
    tokens = await realm.tokens(bare, EMAIL, scope=scope)
    assert tokens["scope"] == "openid email offline_access"
    assert unverified_claims(tokens["access_token"])["scope"] == "openid email offline_access"

    reports = await realm.client(scopes=["reports:read"])
    tokens = await realm.tokens(reports, EMAIL, scope=scope)
    assert tokens["scope"] == "openid email offline_access reports:read"

    # A refresh cannot reach past the grant either.
    widened = await realm.refresh(reports, tokens["refresh_token"], scope="openid billing:write")
    assert error_of(widened) == "invalid_scope", describe(widened)


async def test_client_credentials_scopes_are_the_clients(realm: Realm, admin: AuthPIAdmin) -> None:
    await admin.issuers.update(realm.id, {"available_scopes": ["reports:read", "billing:write"]})
    bare = await realm.client("m2m")
    refused = await realm.token(bare, grant_type="client_credentials", scope="reports:read")
    assert refused.status_code == 400 and error_of(refused) == "invalid_scope", describe(refused)
    empty = await realm.token(bare, grant_type="client_credentials")
    assert empty.status_code == 200 and empty.json()["scope"] == "", describe(empty)

    m2m = await realm.client("m2m", scopes=["reports:read"])
    wider = await realm.token(m2m, grant_type="client_credentials", scope="reports:read billing:write")
    assert error_of(wider) == "invalid_scope", describe(wider)
    granted = await realm.token(m2m, grant_type="client_credentials")
    assert granted.json()["scope"] == "reports:read"
