"""Clients (decision 27): types and defaults, secrets, redirect-URI rules, settings, CRUD, lists."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, field_names

pytestmark = pytest.mark.anyio

WEB_URI = "https://app.example.com/callback"
PASSWORD = {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}}


def web(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "settings": {"openid": {"redirect_uris": [WEB_URI]}}, **extra}


def problems(exc: ValidationError) -> dict[str, str]:
    return {f["field"]: f["code"] for f in exc.fields}


# --- create, secrets ---------------------------------------------------------------------------


async def test_web_client_defaults_and_secret_shown_once(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create(web("Web app", description="Portal", metadata={"team": "web"}))
    assert re.fullmatch(r"c_[0-9a-z]{25}", created.id)
    assert created.issuer_id == issuer.id
    assert (created.type, created.confidential, created.status) == ("web", True, "active")
    assert created.secret is not None and created.secret.startswith("cs_") and len(created.secret) > 40
    assert created.description == "Portal" and created.logo_url is None
    assert created.metadata is not None and created.metadata.model_dump() == {"team": "web"}
    assert created.created_at > 10**12 and created.updated_at == created.created_at
    assert created._etag == f'"{created.updated_at}"'
    assert created.settings == {
        "openid": {
            "application_type": "web",
            "redirect_uris": [WEB_URI],
            "post_logout_redirect_uris": [],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_signature_alg": "ES256",
            "access_token_ttl": None,
            "id_token_ttl": None,
            "refresh_token_ttl": None,
            "require_consent": False,
            "organizations": {"mode": "all", "allowlist": [], "required": False},
            "allowed_resources": [],
            "allowed_origins": [],
        }
    }

    fetched = await clients.get(created.id)
    assert fetched.settings == created.settings
    assert fetched._etag == created._etag
    body = (await raw.get(f"{account_path}/issuers/{issuer.id}/clients/{created.id}")).json()["data"]
    assert "secret" not in body and "secret_digest" not in body
    assert body["protocol"] == "openid" and body["application_type"] == "web" and body["scopes"] == []
    assert created.secret not in str(body)


async def test_rotate_secret_replaces_it(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create(web("Rotating"))
    assert created.secret_rotated_at is None
    rotated = await clients.rotate_secret(created.id)
    assert rotated.secret.startswith("cs_") and rotated.secret != created.secret
    after = await clients.get(created.id)
    assert after.secret_rotated_at is not None and after.secret_rotated_at >= created.created_at
    assert after._etag != created._etag and rotated._etag == after._etag
    again = await clients.rotate_secret(created.id, if_match=after._etag)
    assert again.secret not in (created.secret, rotated.secret)
    with pytest.raises(PreconditionFailedError) as stale:
        await clients.rotate_secret(created.id, if_match=after._etag)
    assert stale.value.current_etag == (await clients.get(created.id))._etag


@pytest.mark.parametrize(
    ("client_type", "uri", "application_type"),
    [("spa", "https://spa.example.com/", "web"), ("native", "com.example.app:/oauth", "native")],
)
async def test_public_clients_have_no_secret(
    admin: AuthPIAdmin, issuer: Issuer, client_type: str, uri: str, application_type: str
) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create(
        {"name": client_type, "type": client_type, "settings": {"openid": {"redirect_uris": [uri]}}}
    )
    assert created.confidential is False and created.secret is None
    assert created.settings["openid"]["application_type"] == application_type
    assert created.settings["openid"]["grant_types"] == ["authorization_code", "refresh_token"]
    with pytest.raises(ConflictError):
        await clients.rotate_secret(created.id)
    assert (await clients.get(created.id)).secret_rotated_at is None


async def test_m2m_client(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create({"name": "Backend", "type": "m2m", "scopes": ["reports:read"]})
    assert created.confidential is True and created.secret is not None
    assert created.settings["openid"]["grant_types"] == ["client_credentials"]
    assert created.settings["openid"]["redirect_uris"] == []
    listed = [c async for c in clients.list_all() if c.id == created.id]
    assert listed[0].scopes == ["reports:read"]
    assert listed[0].grant_types == ["client_credentials"] and listed[0].redirect_uri_count == 0

    with pytest.raises(ValidationError) as public_m2m:
        await clients.create({"name": "Bad", "type": "m2m", "confidential": False})
    assert "confidential" in field_names(public_m2m.value.fields)


async def test_explicit_confidentiality(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    public_web = await clients.create(web("Public web", confidential=False))
    assert public_web.confidential is False and public_web.secret is None
    confidential_spa = await clients.create(
        {
            "name": "Confidential SPA",
            "type": "spa",
            "confidential": True,
            "settings": {"openid": {"redirect_uris": [WEB_URI]}},
        }
    )
    assert confidential_spa.confidential is True and confidential_spa.secret is not None


# --- rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_type", "uri", "code"),
    [
        ("web", "https://app.example.com/cb?x=1", None),
        ("web", "http://localhost:3000/cb", None),
        ("web", "http://127.0.0.1:8080/cb", None),
        ("web", "http://[::1]/cb", None),
        ("spa", "https://spa.example.com/", None),
        ("native", "com.example.app:/oauth2redirect", None),
        ("native", "http://127.0.0.1/cb", None),
        ("native", "https://app.example.com/native", None),
        ("web", "https://*.example.com/cb", "wildcard"),
        ("web", "https://app.example.com/cb/*", "wildcard"),
        ("native", "com.example.*:/cb", "wildcard"),
        ("web", "https://app.example.com/cb#section", "fragment"),
        ("web", "/relative/callback", "invalid_uri"),
        ("web", "https:///no-host", "invalid_uri"),
        ("web", "https://user:pw@app.example.com/cb", "invalid_uri"),
        ("web", "http://app.example.com/cb", "insecure_uri"),
        ("spa", "http://spa.example.com/cb", "insecure_uri"),
        ("web", "com.example.app:/cb", "insecure_uri"),
        ("native", "myapp://callback", "invalid_scheme"),
        ("native", "javascript:alert(1)", "invalid_scheme"),
    ],
)
async def test_redirect_uri_rules(
    admin: AuthPIAdmin, issuer: Issuer, client_type: str, uri: str, code: str | None
) -> None:
    clients = admin.issuer(issuer.id).clients
    for key in ("redirect_uris", "post_logout_redirect_uris"):
        openid = {
            "redirect_uris": [WEB_URI if client_type != "native" else "com.example.app:/cb"],
            key: [uri],
        }
        body = {"name": "URIs", "type": client_type, "settings": {"openid": openid}}
        if code is None:
            created = await clients.create(body)
            assert uri in created.settings["openid"][key]
            continue
        with pytest.raises(ValidationError) as exc:
            await clients.create(body)
        assert problems(exc.value).get(f"settings.openid.{key}") == code, exc.value.fields


async def test_authorization_code_needs_a_redirect_uri(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    for body in ({"name": "No URIs"}, {"name": "Empty", "settings": {"openid": {"redirect_uris": []}}}):
        with pytest.raises(ValidationError) as exc:
            await clients.create(body)
        assert problems(exc.value) == {"settings.openid.redirect_uris": "required"}


@pytest.mark.parametrize(
    ("openid", "field"),
    [
        ({"grant_types": ["implicit"]}, "settings.openid.grant_types"),
        ({"grant_types": []}, "settings.openid.grant_types"),
        ({"grant_types": ["refresh_token"]}, "settings.openid.grant_types"),
        ({"response_signature_alg": "HS256"}, "settings.openid.response_signature_alg"),
        ({"access_token_ttl": 59}, "settings.openid.access_token_ttl"),
        ({"id_token_ttl": 1814401}, "settings.openid.id_token_ttl"),
        ({"refresh_token_ttl": "3600"}, "settings.openid.refresh_token_ttl"),
        ({"require_consent": "yes"}, "settings.openid.require_consent"),
        ({"application_type": "desktop"}, "settings.openid.application_type"),
        ({"organizations": {"mode": "some"}}, "settings.openid.organizations.mode"),
        (
            {"organizations": {"mode": "allowlist", "allowlist": "org_1"}},
            "settings.openid.organizations.allowlist",
        ),
        ({"redirect_uri": WEB_URI}, "settings.openid.redirect_uri"),
        ({"redirect_uris": WEB_URI}, "settings.openid.redirect_uris"),
    ],
)
async def test_invalid_openid_settings(
    admin: AuthPIAdmin, issuer: Issuer, openid: dict[str, Any], field: str
) -> None:
    settings = {"openid": {"redirect_uris": [WEB_URI], **openid}}
    with pytest.raises(ValidationError) as exc:
        await admin.issuer(issuer.id).clients.create({"name": "Bad", "settings": settings})
    assert field in field_names(exc.value.fields), exc.value.fields


async def test_public_client_cannot_use_client_credentials(admin: AuthPIAdmin, issuer: Issuer) -> None:
    with pytest.raises(ValidationError) as exc:
        await admin.issuer(issuer.id).clients.create(
            {"name": "SPA", "type": "spa", "settings": {"openid": {"grant_types": ["client_credentials"]}}}
        )
    assert "settings.openid.grant_types" in field_names(exc.value.fields)


async def test_full_settings_round_trip(admin: AuthPIAdmin, issuer: Issuer) -> None:
    openid = {
        "application_type": "native",
        "redirect_uris": ["com.example.app:/cb", "http://127.0.0.1/cb"],
        "post_logout_redirect_uris": ["com.example.app:/bye"],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_signature_alg": "EdDSA",
        "access_token_ttl": 60,
        "id_token_ttl": 1814400,
        "refresh_token_ttl": 86400,
        "require_consent": True,
        "organizations": {"mode": "allowlist", "allowlist": ["org_a", "org_b"], "required": False},
        "allowed_resources": ["https://api.example.com/", "urn:example:files"],
        "allowed_origins": ["https://app.example.com", "http://127.0.0.1:5173"],
    }
    created = await admin.issuer(issuer.id).clients.create(
        {"name": "Everything", "type": "native", "confidential": True, "settings": {"openid": openid}}
    )
    assert created.settings == {"openid": openid}
    assert (await admin.issuer(issuer.id).clients.get(created.id)).settings == {"openid": openid}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "type": "desktop"}, "type"),
        ({"name": "x", "scopes": "openid"}, "scopes"),
        ({"name": "x", "scopes": ["has space"]}, "scopes"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "logo_url": "not a url"}, "logo_url"),
    ],
)
async def test_invalid_create_bodies(
    admin: AuthPIAdmin, issuer: Issuer, body: dict[str, Any], field: str
) -> None:
    if body.get("name"):
        body = {**body, "settings": {"openid": {"redirect_uris": [WEB_URI]}}}
    with pytest.raises(ValidationError) as exc:
        await admin.issuer(issuer.id).clients.create(body)
    assert field in field_names(exc.value.fields), exc.value.fields


# --- update, delete ----------------------------------------------------------------------------


async def test_update_with_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create(
        web("Before", settings={"openid": {"redirect_uris": [WEB_URI], "response_signature_alg": "RS256"}})
    )
    updated = await clients.update(
        created.id,
        {
            "name": "After",
            "description": "Now described",
            "logo_url": "https://cdn.example.com/logo.png",
            "scopes": ["openid", "profile"],
            "metadata": {"owner": "ops"},
            "settings": {
                "openid": {"redirect_uris": ["https://new.example.com/cb"], "require_consent": True}
            },
        },
        if_match=created._etag,
    )
    assert (updated.name, updated.description) == ("After", "Now described")
    assert updated.logo_url == "https://cdn.example.com/logo.png"
    openid = updated.settings["openid"]
    assert openid["redirect_uris"] == ["https://new.example.com/cb"]
    assert openid["require_consent"] is True
    assert openid["response_signature_alg"] == "RS256"  # untouched keys are kept
    assert updated.updated_at is not None and updated.updated_at > created.created_at
    assert updated._etag != created._etag

    with pytest.raises(PreconditionFailedError) as stale:
        await clients.update(created.id, {"name": "Lost update"}, if_match=created._etag)
    assert stale.value.current_etag == updated._etag
    assert (await clients.get(created.id)).name == "After"

    with pytest.raises(ValidationError) as immutable:
        await clients.update(created.id, {"type": "spa", "confidential": False})
    assert problems(immutable.value) == {"type": "immutable", "confidential": "immutable"}
    same = await clients.update(created.id, {"type": "web", "confidential": True})
    assert same.type == "web"

    with pytest.raises(ValidationError) as bad_uri:
        await clients.update(created.id, {"settings": {"openid": {"redirect_uris": ["https://*.x.com/"]}}})
    assert problems(bad_uri.value) == {"settings.openid.redirect_uris": "wildcard"}

    disabled = await clients.update(created.id, {"status": "disabled"})
    assert disabled.status == "disabled" and disabled.status_at is not None
    assert disabled.status_at >= created.created_at
    with pytest.raises(ValidationError) as deleted:
        await clients.update(created.id, {"status": "deleted"})
    assert "status" in field_names(deleted.value.fields)


async def test_soft_delete(admin: AuthPIAdmin, issuer: Issuer) -> None:
    clients = admin.issuer(issuer.id).clients
    created = await clients.create(web("Doomed"))
    with pytest.raises(PreconditionFailedError):
        await clients.delete(created.id, if_match='"1"')
    await clients.delete(created.id, if_match=created._etag)
    with pytest.raises(NotFoundError):
        await clients.get(created.id)
    with pytest.raises(NotFoundError):
        await clients.update(created.id, {"name": "ghost"})
    with pytest.raises(NotFoundError):
        await clients.rotate_secret(created.id)
    with pytest.raises(NotFoundError):
        await clients.delete(created.id)
    assert created.id not in [c.id async for c in clients.list_all()]
    gone = [c async for c in clients.list_all(status="deleted")]
    assert [c.id for c in gone] == [created.id] and gone[0].status == "deleted"


# --- lists -------------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_filters(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    clients = admin.issuer(issuer.id).clients
    made = [
        await clients.create(web(f"Alpha {unique} web")),
        await clients.create(
            {
                "name": f"alpha {unique} SPA",
                "type": "spa",
                "settings": {"openid": {"redirect_uris": [WEB_URI, "http://localhost/cb"]}},
            }
        ),
        await clients.create(
            {
                "name": f"Beta {unique} native",
                "type": "native",
                "settings": {"openid": {"redirect_uris": ["com.x.y:/cb"]}},
            }
        ),
        await clients.create({"name": f"Beta {unique} m2m", "type": "m2m"}),
        await clients.create(web(f"Gamma {unique} disabled", status="disabled")),
    ]
    ids = [c.id for c in made]

    first = await clients.list(limit=2)
    assert [c.id for c in first.data] == ids[::-1][:2]
    assert first.has_more and first.next_cursor == ids[3]
    everything = [c async for c in clients.list_all(limit=2)]
    assert [c.id for c in everything] == ids[::-1]
    last = await clients.list(limit=2, cursor=ids[1])
    assert [c.id for c in last.data] == [ids[0]] and not last.has_more and last.next_cursor is None

    spa = everything[3]
    assert (spa.type, spa.confidential, spa.protocol, spa.application_type) == ("spa", False, "openid", "web")
    assert spa.grant_types == ["authorization_code", "refresh_token"]
    assert spa.redirect_uri_count == 2 and spa.configuration_indexed is False
    assert spa.description is None and spa.logo_url is None and spa.scopes == []

    async def names(**filters: Any) -> list[str]:
        return [c.id async for c in clients.list_all(**filters)]

    assert await names(q=f"alpha {unique}") == [ids[1], ids[0]]
    assert await names(q=ids[2]) == [ids[2]]
    assert await names(name=f"BETA {unique}") == [ids[3], ids[2]]
    assert await names(status="disabled") == [ids[4]]
    assert await names(status="active") == ids[3::-1]
    assert await names(application_type="native") == [ids[2]]
    assert await names(application_type="web") == [ids[4], ids[3], ids[1], ids[0]]
    assert await names(application_type="spa") == [ids[1]]
    assert await names(application_type="m2m") == [ids[3]]
    assert await names(application_type="desktop") == []
    assert await names(readiness="anything") == ids[::-1]


# --- isolation, scopes, idempotency, readiness -------------------------------------------------


async def test_other_issuers_and_accounts_are_not_found(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    unique: str,
) -> None:
    mine = await admin.issuer(issuer.id).clients.create(web("Mine"))
    sibling = await admin.issuers.create({"name": f"sibling-{unique}"})
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).clients.get(mine.id)
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).clients.rotate_secret(mine.id)

    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        theirs = await other.issuers.create({"name": f"theirs-{unique}"})
        their_client = await other.issuer(theirs.id).clients.create(web("Theirs"))
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).clients.get(mine.id)
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).clients.create(web("Intruder"))
    with pytest.raises(NotFoundError):
        await admin.issuer(theirs.id).clients.list()
    with pytest.raises(NotFoundError):
        await admin.issuer(theirs.id).clients.get(their_client.id)


async def test_scopes_are_enforced(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    existing = await admin.issuer(issuer.id).clients.create(web("Scoped"))
    key = await make_key(["issuers.clients:read"])
    async with client_for(key.id, key.secret_plain) as reader:
        assert (await reader.issuer(issuer.id).clients.get(existing.id)).id == existing.id
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).clients.create(web("Nope"))
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).clients.rotate_secret(existing.id)
    key = await make_key(["issuers.users:write"])
    async with client_for(key.id, key.secret_plain) as unrelated:
        with pytest.raises(ForbiddenError):
            await unrelated.issuer(issuer.id).clients.list()


async def test_idempotent_create_replays_the_same_client(admin: AuthPIAdmin, issuer: Issuer) -> None:
    key = str(uuid.uuid4())
    first = await admin.issuer(issuer.id).clients.create(web("Once"), idempotency_key=key)
    second = await admin.issuer(issuer.id).clients.create(web("Once"), idempotency_key=key)
    assert second.id == first.id and second.secret == first.secret
    assert [c.id async for c in admin.issuer(issuer.id).clients.list_all()] == [first.id]


async def test_issuer_readiness_needs_login_method_and_active_client(admin: AuthPIAdmin, unique: str) -> None:
    name = f"readiness-{unique}"
    created = await admin.issuers.create({"name": name})

    async def readiness() -> str:
        [item] = [i async for i in admin.issuers.list_all(q=name)]
        return item.readiness

    assert await readiness() == "needs_auth_method"
    await admin.issuer(created.id).auth_methods.create(PASSWORD)  # type: ignore[arg-type]
    assert await readiness() == "needs_client"
    client = await admin.issuer(created.id).clients.create(web("App"))
    assert await readiness() == "ready"
    assert [i.id async for i in admin.issuers.list_all(q=name, readiness="ready")] == [created.id]
    await admin.issuer(created.id).clients.update(client.id, {"status": "disabled"})
    assert await readiness() == "needs_client"
    await admin.issuer(created.id).clients.update(client.id, {"status": "active"})
    assert await readiness() == "ready"
    await admin.issuer(created.id).clients.delete(client.id)
    assert await readiness() == "needs_client"
