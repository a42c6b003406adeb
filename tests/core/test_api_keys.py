"""Account API keys: secrets shown once, lifecycle (block/unblock/revoke/rotate/expiry), scopes."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, field_names
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def _works(client_for: ClientFactory, key_id: str, secret: str) -> bool:
    """Whether the credential authenticates (GET /v1/me needs no scope)."""
    async with client_for(key_id, secret) as client:
        try:
            await client.whoami()
        except AuthenticationError:
            return False
    return True


async def test_create_returns_the_secret_once(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, server: RunningServer, unique: str
) -> None:
    key = await admin.api_keys.create(
        {
            "name": f"ci-{unique}",
            "description": "Deploys",
            "tags": ["ci", "deploy"],
            "restrictions": {"scopes": ["issuers:read"]},
            "metadata": {"owner": "ops"},
        }
    )
    assert re.fullmatch(r"key_[0-9a-f]{32}", key.id)
    assert key.type == "api_key"
    assert key.status == "active"
    assert key.org_id == "org_" + server.account_id.removeprefix("acc_")
    assert key.issuer_id.startswith("i_")
    assert key.restrictions["scopes"] == ["issuers:read"]
    assert key.tags == ["ci", "deploy"]
    assert len(key.secret_plain) >= 24
    assert key.secret == {"algorithm": "sha256", "hint": key.secret_plain[-8:]}
    assert key._etag == f'"{key.updated_at}"'

    fetched = await raw.get(f"{account_path}/api-keys/{key.id}")
    assert fetched.status_code == 200
    assert "secret_plain" not in fetched.json()["data"]
    assert fetched.json()["data"]["secret"] == {"algorithm": "sha256", "hint": key.secret_plain[-8:]}
    assert key.secret_plain not in fetched.text

    listed = await raw.get(f"{account_path}/api-keys", params={"q": f"ci-{unique}"})
    assert listed.status_code == 200
    items = listed.json()["data"]
    assert [item["id"] for item in items] == [key.id]
    assert "secret_plain" not in items[0]
    assert items[0]["secret_hint"] == key.secret_plain[-8:]
    assert items[0]["scopes"] == ["issuers:read"]
    assert key.secret_plain not in listed.text

    sdk_get = await admin.api_keys.get(key.id)
    assert sdk_get.secret == key.secret
    assert sdk_get.name == f"ci-{unique}"


async def test_list_and_list_all(admin: AuthPIAdmin, unique: str) -> None:
    created = {
        (await admin.api_keys.create({"name": f"lst-{unique}-{n}", "restrictions": {"scopes": []}})).id
        for n in range(3)
    }
    page = await admin.api_keys.list(q=f"lst-{unique}", limit=2)
    assert len(page.data) == 2
    assert page.has_more is True and page.next_cursor is not None
    rest = await admin.api_keys.list(q=f"lst-{unique}", limit=2, cursor=page.next_cursor)
    assert len(rest.data) == 1 and rest.has_more is False and rest.next_cursor is None
    assert {item.id for item in page.data + rest.data} == created

    everything = [item async for item in admin.api_keys.list_all(q=f"lst-{unique}", limit=2)]
    assert sorted(item.id for item in everything) == sorted(created)
    assert all(item.status == "active" and item.scopes == [] for item in everything)


async def test_list_filters_by_status(admin: AuthPIAdmin, make_key: KeyMaker, unique: str) -> None:
    active = await make_key([])
    blocked = await make_key([])
    await admin.api_keys.block(blocked.id)
    blocked_ids = [k.id async for k in admin.api_keys.list_all(q=f"key-{unique}", status="blocked")]
    active_ids = [k.id async for k in admin.api_keys.list_all(q=f"key-{unique}", status="active")]
    assert blocked_ids == [blocked.id]
    assert active_ids == [active.id]


async def test_update_fields_and_if_match(admin: AuthPIAdmin, make_key: KeyMaker) -> None:
    key = await make_key(["issuers:read"])
    updated = await admin.api_keys.update(
        key.id,
        {
            "name": "renamed",
            "description": "now described",
            "tags": ["x"],
            "metadata": {"a": "b"},
            "restrictions": {"scopes": ["issuers:write"]},
        },
        if_match=key._etag,
    )
    assert updated.name == "renamed"
    assert updated.description == "now described"
    assert updated.tags == ["x"]
    assert updated.restrictions["scopes"] == ["issuers:write"]
    assert updated._etag is not None and updated._etag != key._etag

    with pytest.raises(PreconditionFailedError) as stale:
        await admin.api_keys.update(key.id, {"name": "lost"}, if_match=key._etag)
    assert stale.value.current_etag == updated._etag
    assert (await admin.api_keys.get(key.id)).name == "renamed"


async def test_update_rejects_null_name(admin: AuthPIAdmin, make_key: KeyMaker) -> None:
    key = await make_key([])
    with pytest.raises(ValidationError) as invalid:
        await admin.api_keys.update(key.id, {"name": None})
    assert "name" in field_names(invalid.value.fields)
    assert (await admin.api_keys.get(key.id)).name == key.name


async def test_delete(admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory) -> None:
    key = await make_key([])
    assert await _works(client_for, key.id, key.secret_plain)
    assert await admin.api_keys.delete(key.id) is None
    with pytest.raises(NotFoundError):
        await admin.api_keys.get(key.id)
    with pytest.raises(NotFoundError):
        await admin.api_keys.delete(key.id)
    assert not await _works(client_for, key.id, key.secret_plain)


async def test_delete_with_stale_if_match(admin: AuthPIAdmin, make_key: KeyMaker) -> None:
    key = await make_key([])
    renamed = await admin.api_keys.update(key.id, {"name": "changed"})
    with pytest.raises(PreconditionFailedError) as stale:
        await admin.api_keys.delete(key.id, if_match=key._etag)
    assert stale.value.current_etag == renamed._etag
    await admin.api_keys.delete(key.id, if_match=renamed._etag)
    with pytest.raises(NotFoundError):
        await admin.api_keys.get(key.id)


async def test_block_and_unblock(admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory) -> None:
    key = await make_key(["issuers:read"])
    blocked = await admin.api_keys.block(key.id, {"reason": "suspicious"})
    assert blocked.status == "blocked"
    assert blocked.status_reason == "suspicious"
    assert blocked.status_at is not None
    async with client_for(key.id, key.secret_plain) as client:
        with pytest.raises(AuthenticationError):
            await client.whoami()
        with pytest.raises(AuthenticationError):
            await client.issuers.list()

    unblocked = await admin.api_keys.unblock(key.id, if_match=blocked._etag)
    assert unblocked.status == "active"
    assert unblocked._etag != blocked._etag
    async with client_for(key.id, key.secret_plain) as client:
        assert (await client.whoami())["key_id"] == key.id
        assert (await client.issuers.list(limit=1)).data is not None


async def test_block_with_stale_if_match(admin: AuthPIAdmin, make_key: KeyMaker) -> None:
    key = await make_key([])
    current = await admin.api_keys.update(key.id, {"description": "bump"})
    with pytest.raises(PreconditionFailedError) as stale:
        await admin.api_keys.block(key.id, if_match=key._etag)
    assert stale.value.current_etag == current._etag
    assert (await admin.api_keys.get(key.id)).status == "active"


async def test_revoke_is_permanent(admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory) -> None:
    key = await make_key(["issuers:read"])
    revoked = await admin.api_keys.revoke(key.id, {"reason": "leaked"})
    assert revoked.status == "revoked"
    assert not await _works(client_for, key.id, key.secret_plain)
    with pytest.raises(ConflictError):
        await admin.api_keys.unblock(key.id)
    with pytest.raises(ConflictError):
        await admin.api_keys.update(key.id, {"status": "active"})
    with pytest.raises(ConflictError):
        await admin.api_keys.rotate(key.id)
    assert (await admin.api_keys.get(key.id)).status == "revoked"
    assert not await _works(client_for, key.id, key.secret_plain)


async def test_rotate(admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory) -> None:
    key = await make_key([])
    rotated = await admin.api_keys.rotate(key.id)
    assert rotated.secret_plain != key.secret_plain
    assert not await _works(client_for, key.id, key.secret_plain)
    assert await _works(client_for, key.id, rotated.secret_plain)
    after = await admin.api_keys.get(key.id)
    assert after.secret["hint"] == rotated.secret_plain[-8:]
    assert after._etag != key._etag
    listed = [item async for item in admin.api_keys.list_all(q=key.id)]
    assert listed[0].last_rotated_at is not None


async def test_expires_at_in_the_past_is_rejected(admin: AuthPIAdmin, unique: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.api_keys.create(
            {"name": f"old-{unique}", "restrictions": {"scopes": []}, "expires_at": 1_000_000_000_000}
        )
    assert invalid.value.status_code == 422
    assert field_names(invalid.value.fields) == {"expires_at"}


async def test_key_stops_working_when_it_expires(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory, unique: str
) -> None:
    now_ms = time.time_ns() // 1_000_000
    lasting = await make_key([], expires_at=now_ms + 3600_000)
    soon = await make_key([], expires_at=now_ms + 1500)
    assert soon.expires_at == now_ms + 1500
    assert await _works(client_for, soon.id, soon.secret_plain)
    await asyncio.sleep(2)
    assert not await _works(client_for, soon.id, soon.secret_plain)
    assert (await admin.api_keys.get(soon.id)).status == "expired"
    expired = [item.id async for item in admin.api_keys.list_all(q=f"key-{unique}", status="expired")]
    assert expired == [soon.id]
    assert await _works(client_for, lasting.id, lasting.secret_plain)
    assert (await admin.api_keys.get(lasting.id)).status == "active"


# --- authentication failures ------------------------------------------------------------------


async def test_wrong_secret_is_an_authentication_error(
    server: RunningServer, client_for: ClientFactory
) -> None:
    async with client_for(server.key_id, server.key_secret[:-1] + "!") as client:
        with pytest.raises(AuthenticationError) as denied:
            await client.issuers.list()
    assert denied.value.status_code == 401


async def test_unknown_key_is_an_authentication_error(client_for: ClientFactory) -> None:
    async with client_for("key_" + secrets.token_hex(16), "sk_" + secrets.token_urlsafe(32)) as client:
        with pytest.raises(AuthenticationError):
            await client.whoami()


async def test_missing_or_non_basic_credentials(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        missing = await anonymous.get("/v1/me")
        bearer = await anonymous.get("/v1/me", headers={"authorization": f"Bearer {server.key_secret}"})
        garbled = await anonymous.get("/v1/me", headers={"authorization": "Basic !!!not-base64"})
    for response in (missing, bearer, garbled):
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_nul_in_basic_credentials_is_an_authentication_error(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for user, password in ((server.key_id + "\x00", server.key_secret), (server.key_id, "\x00")):
            response = await client.get("/v1/me", auth=(user, password))
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "unauthorized"


async def test_q_finds_keys_by_literal_name_or_id(admin: AuthPIAdmin, unique: str) -> None:
    literal = await admin.api_keys.create({"name": f"q-{unique}-100%_ok", "restrictions": {"scopes": []}})
    await admin.api_keys.create({"name": f"Q-{unique}-100xxok", "restrictions": {"scopes": []}})
    assert [k.id async for k in admin.api_keys.list_all(q=f"q-{unique}-100%_")] == [literal.id]
    assert len([k async for k in admin.api_keys.list_all(q=f"q-{unique}")]) == 2
    assert [k.id async for k in admin.api_keys.list_all(q=literal.id)] == [literal.id]


async def test_ip_allowlist(make_key: KeyMaker, client_for: ClientFactory) -> None:
    elsewhere = await make_key([], restrictions={"scopes": [], "ip_addresses": ["10.0.0.0/8"]})
    local = await make_key([], restrictions={"scopes": [], "ip_addresses": ["127.0.0.1/32", "::1"]})
    assert not await _works(client_for, elsewhere.id, elsewhere.secret_plain)
    assert await _works(client_for, local.id, local.secret_plain)
    assert local.restrictions["ip_addresses"] == ["127.0.0.1/32", "::1"]


async def test_invalid_cidr_is_rejected(make_key: KeyMaker) -> None:
    with pytest.raises(ValidationError) as invalid:
        await make_key([], restrictions={"scopes": [], "ip_addresses": ["not-an-ip"]})
    assert field_names(invalid.value.fields) == {"restrictions.ip_addresses"}


# --- scopes (decision 9) ----------------------------------------------------------------------


async def test_empty_scopes_deny_every_scoped_route(
    make_key: KeyMaker, client_for: ClientFactory, issuer: Issuer, server: RunningServer
) -> None:
    key = await make_key([])
    async with client_for(key.id, key.secret_plain) as client:
        assert (await client.whoami())["accounts"][0]["scopes"] == []
        for call in (
            client.issuers.list(),
            client.issuers.get(issuer.id),
            client.issuers.create({"name": "nope"}),
            client.issuer(issuer.id).auth_methods.list(),
            client.api_keys.list(),
            client.accounts.list(),
            client.accounts.get(server.account_id),
        ):
            with pytest.raises(ForbiddenError) as denied:
                await call
            assert denied.value.status_code == 403
            assert denied.value.error == "insufficient_scope"


async def test_issuers_read_can_list_but_not_create(
    make_key: KeyMaker, client_for: ClientFactory, issuer: Issuer
) -> None:
    key = await make_key(["issuers:read"])
    async with client_for(key.id, key.secret_plain) as client:
        listed = [item.id async for item in client.issuers.list_all(q=issuer.id)]
        assert listed == [issuer.id]
        assert (await client.issuers.get(issuer.id)).id == issuer.id
        with pytest.raises(ForbiddenError):
            await client.issuers.create({"name": "nope"})
        with pytest.raises(ForbiddenError):
            await client.issuers.update(issuer.id, {"name": "nope"})
        with pytest.raises(ForbiddenError):
            await client.issuers.delete(issuer.id)
        # Auth methods are a nested resource: issuers:read does not reach them.
        with pytest.raises(ForbiddenError):
            await client.issuer(issuer.id).auth_methods.list()
        with pytest.raises(ForbiddenError):
            await client.api_keys.list()


async def test_nested_wildcard_scope_reads_auth_methods(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory, issuer: Issuer
) -> None:
    method = await admin.issuer(issuer.id).auth_methods.create(
        {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}}
    )
    key = await make_key(["issuers.*:read"])
    async with client_for(key.id, key.secret_plain) as client:
        page = await client.issuer(issuer.id).auth_methods.list()
        assert [m.id for m in page.data] == [method.id]  # type: ignore[attr-defined]
        assert (await client.issuer(issuer.id).auth_methods.get(method.id)).id == method.id  # type: ignore[attr-defined]
        with pytest.raises(ForbiddenError):
            await client.issuer(issuer.id).auth_methods.create(
                {"name": "TOTP", "method": "totp", "first_factor_only": False}
            )
        with pytest.raises(ForbiddenError):
            await client.issuer(issuer.id).auth_methods.delete(method.id)  # type: ignore[attr-defined]


async def test_write_implies_read_and_manage_implies_write(
    make_key: KeyMaker, client_for: ClientFactory, unique: str
) -> None:
    writer = await make_key(["issuers:write"])
    async with client_for(writer.id, writer.secret_plain) as client:
        created = await client.issuers.create({"name": f"w-{unique}"})
        assert (await client.issuers.get(created.id)).id == created.id
    manager = await make_key(["issuers:manage"])
    async with client_for(manager.id, manager.secret_plain) as client:
        await client.issuers.update(created.id, {"description": "managed"})
        await client.issuers.delete(created.id)


async def test_api_keys_read_cannot_manage_keys(make_key: KeyMaker, client_for: ClientFactory) -> None:
    reader = await make_key(["api_keys:read"])
    other = await make_key([])
    async with client_for(reader.id, reader.secret_plain) as client:
        assert (await client.api_keys.get(other.id)).id == other.id
        for call in (
            client.api_keys.create({"name": "x", "restrictions": {"scopes": []}}),
            client.api_keys.block(other.id),
            client.api_keys.rotate(other.id),
            client.api_keys.delete(other.id),
        ):
            with pytest.raises(ForbiddenError):
                await call


async def test_a_key_cannot_grant_scopes_it_does_not_hold(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory, server: RunningServer, unique: str
) -> None:
    manager = await make_key(["api_keys:manage", "issuers:read"])
    async with client_for(manager.id, manager.secret_plain) as client:
        for scopes in (["*"], ["issuers:write"], ["issuers.*:read"], ["webhooks:read"]):
            with pytest.raises(ForbiddenError):
                await client.api_keys.create({"name": f"esc-{unique}", "restrictions": {"scopes": scopes}})
        narrower = await client.api_keys.create(
            {"name": f"ok-{unique}", "restrictions": {"scopes": ["issuers:read", "api_keys:read"]}}
        )
        with pytest.raises(ForbiddenError):
            await client.api_keys.update(narrower.id, {"restrictions": {"scopes": ["*"]}})
        # Rotating a more powerful key would hand over its secret.
        with pytest.raises(ForbiddenError):
            await client.api_keys.rotate(server.key_id)
        rotated = await client.api_keys.rotate(narrower.id)
        assert rotated.secret_plain
    escalated = [k.id async for k in admin.api_keys.list_all(q=f"esc-{unique}")]
    assert escalated == []
    assert (await admin.api_keys.get(narrower.id)).restrictions["scopes"] == ["issuers:read", "api_keys:read"]


@pytest.mark.parametrize(
    "scope", ["issuers", "issuers:admin", "Issuers:read", "issuers..users:read", "issuers:read ", ""]
)
async def test_invalid_scope_strings_are_rejected(make_key: KeyMaker, scope: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        await make_key(["issuers:read", scope])
    assert invalid.value.status_code == 422
    assert field_names(invalid.value.fields) == {"restrictions.scopes"}
    assert invalid.value.fields[0]["code"] == "invalid_scope"


async def test_create_requires_restrictions(admin: AuthPIAdmin, unique: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.api_keys.create({"name": f"nores-{unique}"})  # type: ignore[typeddict-item]
    assert invalid.value.status_code == 400
    assert field_names(invalid.value.fields) == {"restrictions"}
    assert invalid.value.fields[0]["code"] == "required"
