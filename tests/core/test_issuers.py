"""Issuers: CRUD, ordering and paging, filters, derived list fields, settings, ETags, idempotency."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import (
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from authpi_admin.generated.models import Issuer, IssuerListItem

from tests.core.conftest import field_names

pytestmark = pytest.mark.anyio

PASSWORD = {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}}


async def _listed(admin: AuthPIAdmin, prefix: str, **filters: Any) -> list[IssuerListItem]:
    return [item async for item in admin.issuers.list_all(q=prefix, **filters)]


# --- CRUD -------------------------------------------------------------------------------------


async def test_create_get_update_delete(admin: AuthPIAdmin, unique: str) -> None:
    created = await admin.issuers.create(
        {
            "name": f"crud-{unique}",
            "description": "Production *users*",
            "links": {"terms": "https://example.com/terms"},
            "available_scopes": ["read:docs", "write:docs"],
            "metadata": {"env": "prod"},
        }
    )
    assert re.fullmatch(r"i_[0-9a-z]{25}", created.id)
    assert created.name == f"crud-{unique}"
    assert created.description == "Production *users*"
    assert created.links == {"terms": "https://example.com/terms"}
    assert created.available_scopes == ["read:docs", "write:docs"]
    assert created.status == "active"
    assert created.metadata.model_dump() == {"env": "prod"}
    assert created.created_at > 10**12 and created.updated_at == created.created_at
    assert created._etag == f'"{created.updated_at}"'

    by_resource = await admin.issuers.get(created.id)
    by_scope = await admin.issuer(created.id).get()
    assert by_resource == by_scope == created
    assert by_scope._etag == created._etag

    updated = await admin.issuer(created.id).update({"name": f"crud2-{unique}", "description": None})
    assert updated.name == f"crud2-{unique}"
    assert updated.description is None
    assert updated.available_scopes == ["read:docs", "write:docs"]  # untouched
    again = await admin.issuers.update(created.id, {"available_scopes": []})
    assert again.available_scopes == []
    assert again.name == f"crud2-{unique}"

    assert await admin.issuer(created.id).delete() is None
    with pytest.raises(NotFoundError):
        await admin.issuers.get(created.id)

    other = await admin.issuers.create({"name": f"crud3-{unique}"})
    await admin.issuers.delete(other.id)
    with pytest.raises(NotFoundError):
        await admin.issuer(other.id).get()


async def test_create_minimal_has_every_required_key(raw: httpx.AsyncClient, account_path: str) -> None:
    response = await raw.post(f"{account_path}/issuers", json={"name": "minimal"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"data"}
    data = body["data"]
    for key in ("id", "account_id", "description", "available_scopes", "status", "settings", "metadata"):
        assert key in data
    assert data["description"] is None
    assert data["available_scopes"] == []
    assert data["metadata"] == {}
    assert response.headers["etag"] == f'"{data["updated_at"]}"'


async def test_get_unknown_issuer_is_not_found(admin: AuthPIAdmin) -> None:
    with pytest.raises(NotFoundError) as missing:
        await admin.issuers.get("i_" + "0" * 25)
    assert missing.value.error == "not_found"


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({}, "name", 400),
        ({"name": ""}, "name", 400),
        ({"name": "x", "status": "archived"}, "status", 400),
        ({"name": "x", "status": "deleted"}, "status", 422),
        ({"name": "x", "available_scopes": ["has space"]}, "available_scopes", 422),
        ({"name": "x", "settings": {"branding": {}}}, "settings.access", 400),
        ({"name": "x", "colour": "blue"}, "colour", 400),
    ],
)
async def test_create_validation(admin: AuthPIAdmin, body: dict[str, Any], field: str, status: int) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.issuers.create(body)  # type: ignore[arg-type]
    assert invalid.value.status_code == status
    assert field in field_names(invalid.value.fields)


async def test_update_rejects_null_name(admin: AuthPIAdmin, issuer: Issuer) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).update({"name": None})
    assert field_names(invalid.value.fields) == {"name"}
    assert (await admin.issuer(issuer.id).get()).name == issuer.name


# --- ordering, paging, filters ----------------------------------------------------------------


async def test_list_is_newest_first(admin: AuthPIAdmin, unique: str) -> None:
    created = [(await admin.issuers.create({"name": f"ord-{unique}-{n}"})).id for n in range(3)]
    page = await admin.issuers.list(q=f"ord-{unique}")
    assert [item.id for item in page.data] == list(reversed(created))
    stamps = [item.created_at for item in page.data]
    assert stamps == sorted(stamps, reverse=True)
    assert page.has_more is False and page.next_cursor is None


async def test_list_all_pages_through_everything(admin: AuthPIAdmin, unique: str) -> None:
    prefix = f"page-{unique}"
    created = [(await admin.issuers.create({"name": f"{prefix}-{n}"})).id for n in range(7)]
    newest_first = list(reversed(created))

    first = await admin.issuers.list(q=prefix, limit=3)
    assert [i.id for i in first.data] == newest_first[:3]
    assert first.has_more is True and first.next_cursor == newest_first[2]
    second = await admin.issuers.list(q=prefix, limit=3, cursor=first.next_cursor)
    assert [i.id for i in second.data] == newest_first[3:6]
    third = await admin.issuers.list(q=prefix, limit=3, cursor=second.next_cursor)
    assert [i.id for i in third.data] == newest_first[6:]
    assert third.has_more is False and third.next_cursor is None

    assert [item.id async for item in admin.issuers.list_all(q=prefix, limit=3)] == newest_first


async def test_q_matches_name_substring_case_insensitively_or_exact_id(
    admin: AuthPIAdmin, unique: str
) -> None:
    target = await admin.issuers.create({"name": f"Needle-{unique}-Haystack"})
    assert [i.id for i in await _listed(admin, f"needle-{unique}")] == [target.id]
    assert [i.id for i in await _listed(admin, f"{unique}-HAYSTACK")] == [target.id]
    assert [i.id for i in await _listed(admin, target.id)] == [target.id]
    assert await _listed(admin, f"absent-{unique}") == []


async def test_q_treats_like_wildcards_literally(admin: AuthPIAdmin, unique: str) -> None:
    literal = await admin.issuers.create({"name": f"wild-{unique}-50%_off"})
    await admin.issuers.create({"name": f"wild-{unique}-5000xoff"})
    assert [i.id for i in await _listed(admin, f"wild-{unique}-50%_")] == [literal.id]
    assert len(await _listed(admin, f"wild-{unique}")) == 2


async def test_status_filter_and_soft_delete(admin: AuthPIAdmin, unique: str) -> None:
    prefix = f"st-{unique}"
    active = await admin.issuers.create({"name": f"{prefix}-active"})
    disabled = await admin.issuers.create({"name": f"{prefix}-disabled", "status": "disabled"})
    suspended = await admin.issuers.create({"name": f"{prefix}-suspended"})
    suspended = await admin.issuer(suspended.id).update({"status": "suspended"})
    assert suspended.status == "suspended" and suspended.status_at is not None
    deleted = await admin.issuers.create({"name": f"{prefix}-deleted"})
    await admin.issuer(deleted.id).delete()

    default = {i.id for i in await _listed(admin, prefix)}
    assert default == {active.id, disabled.id, suspended.id}
    assert [i.id for i in await _listed(admin, prefix, status="disabled")] == [disabled.id]
    assert [i.id for i in await _listed(admin, prefix, status="suspended")] == [suspended.id]
    assert [i.id for i in await _listed(admin, prefix, status="active")] == [active.id]
    gone = await _listed(admin, prefix, status="deleted")
    assert [i.id for i in gone] == [deleted.id]
    assert gone[0].status == "deleted"

    # A deleted issuer is gone for every other operation.
    with pytest.raises(NotFoundError):
        await admin.issuers.get(deleted.id)
    with pytest.raises(NotFoundError):
        await admin.issuers.update(deleted.id, {"status": "active"})
    with pytest.raises(NotFoundError):
        await admin.issuers.delete(deleted.id)
    with pytest.raises(NotFoundError):
        await admin.issuer(deleted.id).auth_methods.list()
    with pytest.raises(NotFoundError):
        await admin.issuer(deleted.id).auth_methods.create(PASSWORD)

    with pytest.raises(ValidationError):
        await admin.issuers.list(status="archived")


async def test_access_mode_filter(admin: AuthPIAdmin, unique: str) -> None:
    prefix = f"am-{unique}"
    open_issuer = await admin.issuers.create({"name": f"{prefix}-open"})
    invite = await admin.issuers.create(
        {"name": f"{prefix}-invite", "settings": {"access": {"mode": "invite_only"}}}
    )
    switched = await admin.issuers.create({"name": f"{prefix}-switched"})
    await admin.issuer(switched.id).update({"settings": {"access": {"mode": "approval"}}})

    assert [i.id for i in await _listed(admin, prefix, access_mode="open")] == [open_issuer.id]
    only_invite = await _listed(admin, prefix, access_mode="invite_only")
    assert [i.id for i in only_invite] == [invite.id]
    assert only_invite[0].access_mode == "invite_only"
    assert [i.id for i in await _listed(admin, prefix, access_mode="approval")] == [switched.id]
    assert await _listed(admin, prefix, access_mode="closed") == []


async def test_readiness_and_derived_counts(admin: AuthPIAdmin, unique: str) -> None:
    prefix = f"rd-{unique}"
    bare = await admin.issuers.create({"name": f"{prefix}-bare"})
    configured = await admin.issuers.create(
        {
            "name": f"{prefix}-configured",
            "available_scopes": ["a", "b", "c"],
            "settings": {"access": {}, "branding": {"name": "Acme", "primary_color": "#112233"}},
        }
    )
    methods = admin.issuer(configured.id).auth_methods
    await methods.create({**PASSWORD, "enabled_signup": True})
    await methods.create(
        {
            "name": "GitHub",
            "method": "github",
            "first_factor_only": True,
            "enabled_login": True,
            "enabled_signup": False,
            "settings": {"client_id": "gh", "client_secret": "s"},
        }
    )
    await methods.create(
        {"name": "TOTP", "method": "totp", "first_factor_only": False, "enabled_login": False}
    )
    mfa_only = await admin.issuers.create({"name": f"{prefix}-mfa-only"})
    await admin.issuer(mfa_only.id).auth_methods.create(
        {"name": "TOTP", "method": "totp", "first_factor_only": False}
    )
    off = await admin.issuers.create({"name": f"{prefix}-off", "status": "disabled"})
    await admin.issuer(off.id).auth_methods.create(PASSWORD)

    items = {item.id: item for item in await _listed(admin, prefix)}
    assert items[bare.id].auth_method_count == 0
    assert items[bare.id].enabled_login_method_count == 0
    assert items[bare.id].enabled_signup_method_count == 0
    assert items[bare.id].available_scope_count == 0
    assert items[bare.id].branding_configured is False
    assert items[bare.id].access_mode == "open"
    assert items[bare.id].readiness == "needs_auth_method"

    full = items[configured.id]
    assert full.auth_method_count == 3
    assert full.enabled_login_method_count == 2
    assert full.enabled_signup_method_count == 1
    assert full.available_scope_count == 3
    assert full.branding_configured is True
    # Users could sign in, but no OAuth client exists yet.
    assert full.readiness == "needs_client"

    # A second factor alone cannot sign anybody in.
    assert items[mfa_only.id].enabled_login_method_count == 1
    assert items[mfa_only.id].readiness == "needs_auth_method"
    assert items[off.id].readiness == "disabled"

    by_readiness = {
        value: [i.id for i in await _listed(admin, prefix, readiness=value)]
        for value in ("ready", "needs_auth_method", "needs_client", "disabled")
    }
    assert by_readiness == {
        "ready": [],
        "needs_auth_method": [mfa_only.id, bare.id],
        "needs_client": [configured.id],
        "disabled": [off.id],
    }

    # Counts follow auth-method changes.
    github = next(m for m in (await methods.list()).data if m.method == "github")  # type: ignore[attr-defined]
    await methods.update(github.id, {"enabled_login": False})  # type: ignore[attr-defined]
    await methods.delete(github.id)  # type: ignore[attr-defined]
    refreshed = (await _listed(admin, configured.id))[0]
    assert refreshed.auth_method_count == 2
    assert refreshed.enabled_login_method_count == 1


# --- settings ---------------------------------------------------------------------------------


async def test_settings_defaults(issuer: Issuer) -> None:
    settings = issuer.settings
    assert set(settings) >= {"portals", "branding", "access", "security"}
    assert settings["access"]["mode"] == "open"
    assert settings["access"]["sessions"]["max_age"] == 604800
    assert settings["access"]["sessions"]["idle_timeout"] == 43200
    assert settings["security"]["tokens"] == {
        "access_token_ttl": 1800,
        "id_token_ttl": 3600,
        "refresh_token_ttl": 604800,
    }


async def test_partial_settings_update_is_a_deep_merge(admin: AuthPIAdmin, issuer: Issuer) -> None:
    scope = admin.issuer(issuer.id)
    updated = await scope.update({"settings": {"access": {"sessions": {"max_age": 3600}}}})
    assert updated.settings["access"]["sessions"]["max_age"] == 3600
    assert updated.settings["access"]["sessions"]["idle_timeout"] == 43200
    assert updated.settings["access"]["mode"] == "open"
    assert updated.settings["security"] == issuer.settings["security"]

    branded = await scope.update(
        {"settings": {"branding": {"name": "Acme"}, "portals": {"custom": {"theme": "dark"}}}}
    )
    assert branded.settings["branding"]["name"] == "Acme"
    assert branded.settings["portals"]["custom"] == {"theme": "dark"}  # unknown keys round-trip
    assert branded.settings["portals"]["login"] == issuer.settings["portals"]["login"]
    assert branded.settings["access"]["sessions"]["max_age"] == 3600

    stored = await scope.get()
    assert stored.settings == branded.settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"access": {"sessions": {"max_age": 0}}}, "settings.access.sessions.max_age"),
        ({"access": {"sessions": {"max_age": 31536001}}}, "settings.access.sessions.max_age"),
        ({"access": {"sessions": {"idle_timeout": 2592001}}}, "settings.access.sessions.idle_timeout"),
        ({"access": {"sessions": {"max_age": "1h"}}}, "settings.access.sessions.max_age"),
        ({"access": {"mode": "everyone"}}, "settings.access.mode"),
        ({"portals": {"login": {"enabled": "no"}}}, "settings.portals.login.enabled"),
        ({"portals": {"signup": False}}, "settings.portals.signup.enabled"),
        ({"portals": {"default_locale": "pt"}}, "settings.portals.default_locale"),
        ({"portals": {"default_locale": 7}}, "settings.portals.default_locale"),
        (
            {"security": {"tokens": {"access_token_ttl": 22 * 86400}}},
            "settings.security.tokens.access_token_ttl",
        ),
    ],
)
async def test_settings_validation(
    admin: AuthPIAdmin, issuer: Issuer, settings: dict[str, Any], field: str, unique: str
) -> None:
    with pytest.raises(ValidationError) as on_update:
        await admin.issuer(issuer.id).update({"settings": settings})
    assert on_update.value.status_code == 422
    assert field_names(on_update.value.fields) == {field}
    assert (await admin.issuer(issuer.id).get()).settings == issuer.settings

    with pytest.raises(ValidationError) as on_create:
        await admin.issuers.create({"name": f"bad-{unique}", "settings": {"access": {}, **settings}})
    assert field_names(on_create.value.fields) == {field}
    assert await _listed(admin, f"bad-{unique}") == []


# --- ETags and If-Match -----------------------------------------------------------------------


async def test_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    scope = admin.issuer(issuer.id)
    first = await scope.update({"description": "one"}, if_match=issuer._etag)
    assert first._etag != issuer._etag

    with pytest.raises(PreconditionFailedError) as stale:
        await scope.update({"description": "lost"}, if_match=issuer._etag)
    assert stale.value.status_code == 412
    assert stale.value.error == "precondition_failed"
    current = await scope.get()
    assert stale.value.current_etag == current._etag == first._etag
    assert current.description == "one"

    with pytest.raises(PreconditionFailedError):
        await scope.delete(if_match=issuer._etag)
    assert (await scope.get()).status == "active"
    await scope.delete(if_match=current._etag)
    with pytest.raises(NotFoundError):
        await scope.get()


async def test_etag_changes_on_every_write(admin: AuthPIAdmin, issuer: Issuer) -> None:
    scope = admin.issuer(issuer.id)
    etags = [issuer._etag]
    for n in range(4):
        updated = await scope.update({"metadata": {"n": str(n)}}, if_match=etags[-1])
        etags.append(updated._etag)
    assert len(set(etags)) == len(etags)
    versions = [int((etag or "").strip('"')) for etag in etags]
    assert versions == sorted(versions)
    # Even an update that changes nothing is a write with a new version.
    same = await scope.update({"metadata": {"n": "3"}}, if_match=etags[-1])
    assert same._etag != etags[-1]


async def test_if_match_star_and_lists(admin: AuthPIAdmin, issuer: Issuer) -> None:
    updated = await admin.issuer(issuer.id).update({"description": "any"}, if_match="*")
    assert updated.description == "any"
    listed = await admin.issuer(issuer.id).update({"description": "either"}, if_match=f'"1", {updated._etag}')
    assert listed.description == "either"


# --- idempotency ------------------------------------------------------------------------------


async def test_idempotent_create_replays(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    key = str(uuid.uuid4())
    body = {"name": f"idem-{unique}"}
    first = await admin.issuers.create(body, idempotency_key=key)  # type: ignore[arg-type]
    second = await admin.issuers.create(body, idempotency_key=key)  # type: ignore[arg-type]
    assert second.id == first.id
    assert second == first
    assert second._etag == first._etag

    replay = await raw.post(f"{account_path}/issuers", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == first._etag
    assert replay.json()["data"]["id"] == first.id
    assert [i.id for i in await _listed(admin, f"idem-{unique}")] == [first.id]

    with pytest.raises(ValidationError) as mismatch:
        await admin.issuers.create({"name": f"idem-{unique}-other"}, idempotency_key=key)
    assert mismatch.value.status_code == 422
    assert mismatch.value.error == "invalid_request"
    assert await _listed(admin, f"idem-{unique}-other") == []


async def test_an_immediate_retry_replays(raw: httpx.AsyncClient, account_path: str, unique: str) -> None:
    # The response must be stored before the client receives it, or a retry sent at once would
    # meet an in-flight key (409) instead of a replay; repeat to catch that race.
    for n in range(20):
        key = str(uuid.uuid4())
        body = {"name": f"retry-{unique}-{n}"}
        first = await raw.post(f"{account_path}/issuers", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        again = await raw.post(f"{account_path}/issuers", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()


async def test_idempotent_patch_replays(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, issuer: Issuer
) -> None:
    key = str(uuid.uuid4())
    scope = admin.issuer(issuer.id)
    first = await scope.update({"description": "patched"}, idempotency_key=key)
    second = await scope.update({"description": "patched"}, idempotency_key=key)
    assert second._etag == first._etag
    assert second.updated_at == first.updated_at
    assert (await scope.get())._etag == first._etag  # the handler did not run again

    replay = await raw.patch(
        f"{account_path}/issuers/{issuer.id}",
        json={"description": "patched"},
        headers={"Idempotency-Key": key},
    )
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == first._etag

    with pytest.raises(ValidationError) as mismatch:
        await scope.update({"description": "different"}, idempotency_key=key)
    assert mismatch.value.status_code == 422
    assert (await scope.get()).description == "patched"


async def test_idempotency_key_on_another_path_is_a_mismatch(
    admin: AuthPIAdmin, issuer: Issuer, unique: str
) -> None:
    key = str(uuid.uuid4())
    await admin.issuer(issuer.id).update({"description": "x"}, idempotency_key=key)
    with pytest.raises(ValidationError) as mismatch:
        await admin.issuers.create({"name": f"elsewhere-{unique}"}, idempotency_key=key)
    assert mismatch.value.status_code == 422


async def test_failed_request_releases_the_idempotency_key(admin: AuthPIAdmin, unique: str) -> None:
    key = str(uuid.uuid4())
    bad = {"name": f"rel-{unique}", "settings": {"access": {"sessions": {"max_age": 0}}}}
    with pytest.raises(ValidationError):
        await admin.issuers.create(bad, idempotency_key=key)  # type: ignore[arg-type]
    # Only 2xx responses are kept: the corrected request runs instead of failing as a mismatch.
    fixed = await admin.issuers.create({"name": f"rel-{unique}"}, idempotency_key=key)
    again = await admin.issuers.create({"name": f"rel-{unique}"}, idempotency_key=key)
    assert again.id == fixed.id


async def test_idempotency_keys_are_scoped_per_account(
    admin: AuthPIAdmin, other_account: dict[str, str], client_for: Any, unique: str
) -> None:
    key = str(uuid.uuid4())
    mine = await admin.issuers.create({"name": f"acct-{unique}"}, idempotency_key=key)
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        theirs = await other.issuers.create({"name": f"acct-{unique}"}, idempotency_key=key)
    assert theirs.id != mine.id
    assert theirs.account_id == other_account["account_id"]
