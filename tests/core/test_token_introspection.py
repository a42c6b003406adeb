"""Core API token introspection: API keys (`key_<id>:<secret>`) and the issuer's JWTs."""

from __future__ import annotations

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def test_introspects_api_keys(admin: AuthPIAdmin, server: RunningServer) -> None:
    issuer = await admin.issuers.create({"name": "Introspection"})
    tokens = admin.issuer(issuer.id).tokens
    created = await admin.api_keys.create(
        {"name": "probe", "restrictions": {"scopes": ["issuers:read"], "ip_addresses": ["10.0.0.0/8"]}}
    )
    good = f"{created.id}:{created.secret_plain}"

    result = await tokens.introspect({"token": good})
    assert result["active"] is True
    assert result["key_id"] == created.id
    assert result["scopes"] == ["issuers:read"]

    assert (await tokens.introspect({"token": good, "ip": "10.1.2.3"}))["active"] is True
    outside = await tokens.introspect({"token": good, "ip": "192.0.2.1"})
    assert outside == {"active": False, "reason": "ip_not_allowed"}

    wrong = await tokens.introspect({"token": f"{created.id}:not-the-secret-at-all-xxxxxxxx"})
    assert wrong == {"active": False, "reason": "invalid_credentials"}

    await admin.api_keys.revoke(created.id)
    revoked = await tokens.introspect({"token": good})
    assert revoked == {"active": False, "reason": "key_revoked"}
    assert (await tokens.introspect({"token": "garbage"}))["active"] is False


async def test_introspects_issuer_jwts(admin: AuthPIAdmin, server: RunningServer) -> None:
    issuer = await admin.issuers.create({"name": "Introspection JWT"})
    other = await admin.issuers.create({"name": "Other issuer"})
    client = await admin.issuer(issuer.id).clients.create(
        {"name": "svc", "type": "m2m", "scopes": ["a:read"]}
    )
    assert client.secret
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.url}/{issuer.id}/token",
            data={"grant_type": "client_credentials"},
            auth=(client.id, client.secret),
        )
    access = response.json()["access_token"]

    result = await admin.issuer(issuer.id).tokens.introspect({"token": access})
    assert result["active"] is True
    assert result["sub"] == client.id
    assert result["token_type"] == "access_token"
    assert result["scope"] == "a:read"
    # The token belongs to another issuer: not valid there.
    elsewhere = await admin.issuer(other.id).tokens.introspect({"token": access})
    assert elsewhere["active"] is False
