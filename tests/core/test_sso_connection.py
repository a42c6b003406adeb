"""An organization's SSO connection through the Core API: the ``sso`` block of the org PATCH
(validated, merged, the client secret write-only and sealed), ``rotate-secret`` (row 101: If-Match,
Idempotency-Key replay, scope, isolation) and the ``organization.sso.*`` events, none of which
ever carries the secret."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, NotFoundError, PreconditionFailedError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope, field_names
from tests.db_query import rows
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio

SECRET = "upstream-client-secret-7f3a9c"
CONNECTION = {"issuer_url": "https://sso.acme.example/realms/staff", "client_id": "authpi"}


async def _events_text(raw: httpx.AsyncClient, account_path: str, issuer_id: str) -> tuple[set[str], str]:
    answer = await raw.get(f"{account_path}/events", params={"issuer_id": issuer_id, "limit": 100})
    assert answer.status_code == 200, answer.text
    return {event["type"] for event in answer.json()["data"]}, answer.text


async def test_the_sso_block_is_validated_merged_and_its_secret_never_read_back(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, server: RunningServer
) -> None:
    org = await admin.issuer(issuer.id).organizations.create({"name": "Acme"})
    path = f"{account_path}/issuers/{issuer.id}/organizations/{org.id}"

    bad: list[tuple[dict[str, Any], str]] = [
        ({"enabled": "yes"}, "sso.enabled"),
        ({"issuer_url": "ftp://sso.acme.example"}, "sso.issuer_url"),
        ({"issuer_url": "https://sso.acme.example/?x=1"}, "sso.issuer_url"),
        ({"client_id": ""}, "sso.client_id"),
        ({"scopes": ["openid", "two words"]}, "sso.scopes"),
        ({"unknown": 1}, "sso.unknown"),
        ({"enabled": True, **CONNECTION}, "sso.client_secret"),  # no secret yet
        ({"enabled": True, "client_id": "x", "client_secret": SECRET}, "sso.issuer_url"),
        ({"sso_only": True}, "sso.sso_only"),  # without enabled
    ]
    for sso, field in bad:
        answer = await raw.patch(path, json={"sso": sso})
        assert answer.status_code == 422, (sso, answer.text)
        assert_error_envelope(answer.json(), "invalid_request")
        assert field in field_names(answer.json().get("fields")), (sso, answer.text)
    assert (await raw.get(path)).json()["data"]["sso"] is None  # nothing was stored

    enabled = await raw.patch(path, json={"sso": {"enabled": True, "client_secret": SECRET, **CONNECTION}})
    assert enabled.status_code == 200, enabled.text
    sso = (await raw.get(path)).json()["data"]["sso"]
    assert sso == {
        "enabled": True,
        **CONNECTION,
        "client_secret_set": True,
        "redirect_uri": f"{server.url}/{issuer.id}/sso/{org.id}/callback",
    }
    # Merged: one member changes, the rest (the secret too) stays; null removes a member.
    merged = await raw.patch(path, json={"sso": {"sso_only": True, "scopes": ["openid", "email"]}})
    assert merged.status_code == 200, merged.text
    sso = merged.json()["data"]["sso"]
    assert sso["sso_only"] is True and sso["issuer_url"] == CONNECTION["issuer_url"]
    assert sso["client_secret_set"] is True and sso["scopes"] == ["openid", "email"]
    listed = await raw.get(f"{account_path}/issuers/{issuer.id}/organizations", params={"sso_only": "true"})
    assert [o["id"] for o in listed.json()["data"]] == [org.id]
    assert (await raw.patch(path, json={"sso": {"scopes": None}})).json()["data"]["sso"].get("scopes") is None

    disabled = await raw.patch(path, json={"sso": {"enabled": False, "sso_only": False}})
    assert disabled.status_code == 200 and disabled.json()["data"]["sso"]["enabled"] is False

    kinds, text = await _events_text(raw, account_path, issuer.id)
    assert {"organization.sso.enabled", "organization.sso.updated", "organization.sso.disabled"} <= kinds
    assert SECRET not in text
    stored = await rows(server, "SELECT sso, sso_secret_sealed FROM organizations WHERE id = ?", org.id)
    assert SECRET not in json.dumps(stored[0][0]) and SECRET not in stored[0][1]  # sealed apart
    assert SECRET not in (await raw.get(path)).text


async def test_rotate_secret_answers_a_new_secret_once(
    admin: AuthPIAdmin,
    issuer: Issuer,
    raw: httpx.AsyncClient,
    account_path: str,
    make_key: KeyMaker,
    client_for: ClientFactory,
    other_account: dict[str, str],
) -> None:
    created = await admin.issuer(issuer.id).organizations.create({"name": "Rotating", "sso": CONNECTION})
    org = admin.issuer(issuer.id).organization(created.id)
    path = f"{account_path}/issuers/{issuer.id}/organizations/{created.id}"

    with pytest.raises(PreconditionFailedError):
        await org.sso.rotate_secret(if_match='"1"')
    etag = (await raw.get(path)).headers["etag"]
    headers = {"If-Match": etag, "Idempotency-Key": "rot-1"}
    first = await raw.post(f"{path}/sso/rotate-secret", headers=headers)
    assert first.status_code == 200, first.text
    secret = first.json()["data"]["secret"]
    assert len(secret) >= 40 and first.headers["etag"] != etag
    # The same key replays the same answer; a new key makes a new secret.
    replay = await raw.post(f"{path}/sso/rotate-secret", headers={"Idempotency-Key": "rot-1"})
    assert replay.status_code == 200 and replay.json()["data"]["secret"] == secret
    second = (await org.sso.rotate_secret()).secret
    assert second != secret

    got = await raw.get(path)
    assert got.json()["data"]["sso"]["client_secret_set"] is True
    assert secret not in got.text and second not in got.text
    # With a secret now set, the connection can be switched on.
    assert (await raw.patch(path, json={"sso": {"enabled": True}})).status_code == 200
    kinds, text = await _events_text(raw, account_path, issuer.id)
    assert {"organization.sso.updated", "organization.sso.enabled"} <= kinds
    assert secret not in text and second not in text

    narrow = await make_key(["issuers.organizations:read", "issuers.organizations:write"])
    async with client_for(narrow.id, narrow.secret_plain) as limited:
        with pytest.raises(ForbiddenError):
            await limited.issuer(issuer.id).organization(created.id).sso.rotate_secret()
    allowed = await make_key(["issuers.organizations.sso:write"])
    async with client_for(allowed.id, allowed.secret_plain) as limited:
        assert (await limited.issuer(issuer.id).organization(created.id).sso.rotate_secret()).secret

    elsewhere = await admin.issuers.create({"name": "second issuer"})
    with pytest.raises(NotFoundError):
        await admin.issuer(elsewhere.id).organization(created.id).sso.rotate_secret()
    async with client_for(other_account["key_id"], other_account["key_secret"]) as theirs:
        with pytest.raises(NotFoundError):
            await theirs.issuer(issuer.id).organization(created.id).sso.rotate_secret()
