"""Auth methods: the 13 types and their rules (seed 001, decision 25), secrets, PATCH limits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import field_names

pytestmark = pytest.mark.anyio

APPLE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg\n-----END PRIVATE KEY-----"
)

# method -> (first_factor_only, valid settings or None to omit them)
VALID: dict[str, tuple[bool, dict[str, Any] | None]] = {
    "oauth2": (
        True,
        {
            "provider": "gitlab",
            "client_id": "gl-client",
            "client_secret": "gl-secret-value",
            "redirect_uri": "https://app.example.com/callback",
        },
    ),
    "oidc": (
        True,
        {
            "issuer_url": "https://login.example.com",
            "client_id": "oidc-client",
            "client_secret": "oidc-secret",
        },
    ),
    "apple": (
        True,
        {
            "client_id": "com.example.web",
            "team_id": "TEAM123456",
            "key_id": "KEY1234567",
            "private_key": APPLE_KEY,
        },
    ),
    "github": (True, {"client_id": "gh-client", "client_secret": "gh-secret-value"}),
    "oauth2_manual": (
        True,
        {
            "authorization_url": "https://idp.example.com/authorize",
            "token_url": "https://idp.example.com/token",
            "userinfo_url": "https://idp.example.com/userinfo",
            "client_id": "manual-client",
            "client_secret": "manual-secret",
        },
    ),
    "password": (True, {}),
    "temporary_password": (True, None),
    "email_link": (True, {}),
    "email_otp": (True, None),
    "sms_otp": (True, None),
    "passkey": (True, {}),
    "totp": (False, None),
    "backup_codes": (False, None),
}
SECRETS = {
    "oauth2": "client_secret",
    "oidc": "client_secret",
    "apple": "private_key",
    "github": "client_secret",
    "oauth2_manual": "client_secret",
}
SOCIAL = tuple(SECRETS)
FIRST_PARTY = tuple(m for m in VALID if m not in SOCIAL)

# method -> (body without this key, the field the error must name)
MISSING: dict[str, tuple[str, str]] = {
    "oauth2": ("settings.client_secret", "settings.client_secret"),
    "oidc": ("settings.issuer_url", "settings.issuer_url"),
    "apple": ("settings.private_key", "settings.private_key"),
    "github": ("settings.client_id", "settings.client_id"),
    "oauth2_manual": ("settings.token_url", "settings.token_url"),
    "password": ("settings", "settings"),
    "email_link": ("settings", "settings"),
    "passkey": ("settings", "settings"),
    # Settings are optional for these; first_factor_only is required on every type.
    "temporary_password": ("first_factor_only", "first_factor_only"),
    "email_otp": ("first_factor_only", "first_factor_only"),
    "sms_otp": ("first_factor_only", "first_factor_only"),
    "totp": ("first_factor_only", "first_factor_only"),
    "backup_codes": ("first_factor_only", "first_factor_only"),
}


def body_for(method: str, **overrides: Any) -> dict[str, Any]:
    first_factor_only, settings = VALID[method]
    body: dict[str, Any] = {
        "name": f"{method} login",
        "method": method,
        "first_factor_only": first_factor_only,
    }
    if settings is not None:
        body["settings"] = dict(settings)
    body.update(overrides)
    return body


def test_the_tables_cover_all_thirteen_types() -> None:
    assert len(VALID) == 13
    assert set(MISSING) == set(VALID)


@pytest.mark.parametrize("method", list(VALID))
async def test_create_each_type(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, issuer: Issuer, method: str
) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for(method))
    data = created.model_dump()
    assert data["id"].startswith("am_")
    assert data["issuer_id"] == issuer.id
    assert data["method"] == method
    assert data["name"] == f"{method} login"
    assert data["first_factor_only"] is VALID[method][0]
    assert data["enabled_login"] is True
    assert data["enabled_signup"] is False
    assert data["featured"] is False
    assert isinstance(data["settings"], dict)
    assert created._etag == f'"{data["updated_at"]}"'
    # Public settings come back; secrets never do.
    for key, value in (VALID[method][1] or {}).items():
        if key == SECRETS.get(method):
            assert key not in data["settings"]
        else:
            assert data["settings"][key] == value

    fetched = await methods.get(data["id"])
    assert fetched.model_dump() == data
    page = await methods.list()
    assert [m.model_dump() for m in page.data] == [data]
    assert page.has_more is False and page.next_cursor is None

    if method in SECRETS:
        secret = (VALID[method][1] or {})[SECRETS[method]]
        base = f"{account_path}/issuers/{issuer.id}/auth-methods"
        for response in (await raw.get(base), await raw.get(f"{base}/{data['id']}")):
            assert response.status_code == 200
            assert secret not in response.text
            assert SECRETS[method] not in response.text


@pytest.mark.parametrize("method", list(MISSING))
async def test_create_without_a_required_field(admin: AuthPIAdmin, issuer: Issuer, method: str) -> None:
    body = body_for(method, settings=dict(VALID[method][1] or {}))
    omit, field = MISSING[method]
    if omit.startswith("settings."):
        del body["settings"][omit.removeprefix("settings.")]
    else:
        body.pop(omit, None)
        if omit == "first_factor_only" and not body["settings"]:
            del body["settings"]
    methods = admin.issuer(issuer.id).auth_methods
    with pytest.raises(ValidationError) as invalid:
        await methods.create(body)
    assert field in field_names(invalid.value.fields), invalid.value.fields
    problem = next(f for f in invalid.value.fields if f["field"] == field)
    assert problem["code"] == "required"
    assert (await methods.list()).data == []


async def test_blank_required_setting_counts_as_missing(admin: AuthPIAdmin, issuer: Issuer) -> None:
    body = body_for("github")
    body["settings"]["client_secret"] = "   "
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body)
    assert field_names(invalid.value.fields) == {"settings.client_secret"}


async def test_every_missing_setting_is_reported(admin: AuthPIAdmin, issuer: Issuer) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body_for("apple", settings={"client_id": "x"}))
    assert invalid.value.status_code == 422
    assert field_names(invalid.value.fields) == {
        "settings.team_id",
        "settings.key_id",
        "settings.private_key",
    }


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"ttl": 10}, "settings.ttl"),
        ({"code_length": 3}, "settings.code_length"),
        ({"max_attempts": "five"}, "settings.max_attempts"),
    ],
)
async def test_invalid_optional_settings(
    admin: AuthPIAdmin, issuer: Issuer, settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body_for("email_otp", settings=settings))
    assert field_names(invalid.value.fields) == {field}


@pytest.mark.parametrize(
    ("method", "settings", "field"),
    [
        ("oauth2", {"tenant": "not a tenant/../"}, "settings.tenant"),
        ("oidc", {"store_tokens": "yes"}, "settings.store_tokens"),
        ("oauth2_manual", {"claims": {"subject": 5}}, "settings.claims"),
        ("oauth2_manual", {"claims": {"birthday": "dob"}}, "settings.claims"),
        ("oauth2_manual", {"token_endpoint_auth": "private_key_jwt"}, "settings.token_endpoint_auth"),
    ],
)
async def test_invalid_upstream_settings(
    admin: AuthPIAdmin, issuer: Issuer, method: str, settings: dict[str, Any], field: str
) -> None:
    body = body_for(method)
    body["settings"].update(settings)
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body)
    assert invalid.value.status_code == 422
    assert field_names(invalid.value.fields) == {field}


async def test_social_urls_must_be_https(admin: AuthPIAdmin, issuer: Issuer) -> None:
    body = body_for("oidc")
    body["settings"]["issuer_url"] = "http://login.example.com"
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body)
    assert field_names(invalid.value.fields) == {"settings.issuer_url"}


async def test_unknown_method_type(admin: AuthPIAdmin, issuer: Issuer) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(
            {"name": "Magic", "method": "telepathy", "first_factor_only": True}
        )
    assert "method" in field_names(invalid.value.fields)


# --- first_factor_only ------------------------------------------------------------------------


@pytest.mark.parametrize("method", [m for m in VALID if m != "passkey"])
async def test_first_factor_only_is_fixed_per_type(admin: AuthPIAdmin, issuer: Issuer, method: str) -> None:
    wrong = not VALID[method][0]
    with pytest.raises(ValidationError) as invalid:
        await admin.issuer(issuer.id).auth_methods.create(body_for(method, first_factor_only=wrong))
    assert field_names(invalid.value.fields) == {"first_factor_only"}


@pytest.mark.parametrize("first_factor_only", [True, False])
async def test_passkey_takes_either_first_factor_only(
    admin: AuthPIAdmin, issuer: Issuer, first_factor_only: bool
) -> None:
    created = await admin.issuer(issuer.id).auth_methods.create(
        body_for("passkey", first_factor_only=first_factor_only)
    )
    assert created.first_factor_only is first_factor_only  # type: ignore[attr-defined]


# --- uniqueness -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", FIRST_PARTY)
async def test_first_party_types_are_unique_per_issuer(
    admin: AuthPIAdmin, issuer: Issuer, method: str
) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    first = await methods.create(body_for(method))
    with pytest.raises(ConflictError) as duplicate:
        await methods.create(body_for(method, name="Second"))
    assert duplicate.value.error == "conflict"
    assert [m.id for m in (await methods.list()).data] == [first.id]  # type: ignore[attr-defined]
    # After a delete the type is free again.
    await methods.delete(first.id)  # type: ignore[attr-defined]
    await methods.create(body_for(method, name="Replacement"))


async def test_first_party_uniqueness_is_per_issuer(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    other = await admin.issuers.create({"name": f"second-{unique}"})
    await admin.issuer(issuer.id).auth_methods.create(body_for("password"))
    await admin.issuer(other.id).auth_methods.create(body_for("password"))


@pytest.mark.parametrize("method", SOCIAL)
async def test_social_types_may_repeat(admin: AuthPIAdmin, issuer: Issuer, method: str) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    one = await methods.create(body_for(method, name="Work"))
    two = await methods.create(body_for(method, name="Personal"))
    assert one.id != two.id  # type: ignore[attr-defined]
    assert len((await methods.list()).data) == 2


# --- update -----------------------------------------------------------------------------------


async def test_update_mutable_fields(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for("github"))
    mid = created.id  # type: ignore[attr-defined]
    updated = await methods.update(
        mid,
        {
            "name": "GitHub (staff)",
            "enabled_login": False,
            "enabled_signup": True,
            "featured": True,
            "settings": {"scopes": ["read:user"], "allow_signup_domains": ["example.com"]},
        },
        if_match=created._etag,
    )
    data = updated.model_dump()
    assert data["name"] == "GitHub (staff)"
    assert (data["enabled_login"], data["enabled_signup"], data["featured"]) == (False, True, True)
    assert data["settings"]["scopes"] == ["read:user"]
    assert data["settings"]["allow_signup_domains"] == ["example.com"]
    assert data["settings"]["client_id"] == "gh-client"
    assert "client_secret" not in data["settings"]
    assert updated._etag != created._etag
    assert (await methods.get(mid)).model_dump() == data

    # Sending the unchanged core credentials is fine.
    same = await methods.update(
        mid, {"settings": {"client_id": "gh-client", "client_secret": "gh-secret-value"}}
    )
    assert same.model_dump()["settings"]["client_id"] == "gh-client"


async def test_update_first_party_settings(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for("password", settings={"min_length": 10}))
    assert created.model_dump()["settings"]["min_length"] == 10
    updated = await methods.update(created.id, {"settings": {"require_digit": True}})  # type: ignore[attr-defined]
    settings = updated.model_dump()["settings"]
    assert settings["require_digit"] is True
    assert settings["min_length"] == 10  # merged, not replaced


@pytest.mark.parametrize(
    ("method", "change", "field"),
    [
        ("github", {"method": "oidc"}, "method"),
        ("password", {"method": "passkey"}, "method"),
        ("totp", {"first_factor_only": True}, "first_factor_only"),
        ("github", {"settings": {"client_id": "another"}}, "settings.client_id"),
        ("github", {"settings": {"client_secret": "another"}}, "settings.client_secret"),
        ("oidc", {"settings": {"issuer_url": "https://other.example.com"}}, "settings.issuer_url"),
        ("apple", {"settings": {"private_key": "another"}}, "settings.private_key"),
        ("oauth2", {"settings": {"provider": "bitbucket"}}, "settings.provider"),
        ("oauth2_manual", {"settings": {"token_url": "https://x.example.com/t"}}, "settings.token_url"),
    ],
)
async def test_type_and_core_settings_are_immutable(
    admin: AuthPIAdmin, issuer: Issuer, method: str, change: dict[str, Any], field: str
) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for(method))
    with pytest.raises(ValidationError) as invalid:
        await methods.update(created.id, change)  # type: ignore[attr-defined]
    assert invalid.value.status_code == 422
    problems = {f["field"]: f["code"] for f in invalid.value.fields}
    assert problems == {field: "immutable"}
    unchanged = await methods.get(created.id)  # type: ignore[attr-defined]
    assert unchanged.model_dump() == created.model_dump()


async def test_update_validates_against_the_stored_settings(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for("password", settings={"max_length": 20}))
    with pytest.raises(ValidationError) as invalid:
        await methods.update(created.id, {"settings": {"min_length": 50}})  # type: ignore[attr-defined]
    assert field_names(invalid.value.fields) == {"settings.min_length"}
    assert (await methods.get(created.id)).model_dump()["settings"]["min_length"] == 8  # type: ignore[attr-defined]

    with pytest.raises(ValidationError) as out_of_range:
        await methods.update(created.id, {"settings": {"max_length": 5000}})  # type: ignore[attr-defined]
    assert field_names(out_of_range.value.fields) == {"settings.max_length"}


async def test_update_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    created = await methods.create(body_for("email_otp"))
    mid = created.id  # type: ignore[attr-defined]
    current = await methods.update(mid, {"featured": True})
    with pytest.raises(PreconditionFailedError) as stale:
        await methods.update(mid, {"featured": False}, if_match=created._etag)
    assert stale.value.current_etag == current._etag
    with pytest.raises(PreconditionFailedError):
        await methods.delete(mid, if_match=created._etag)
    await methods.delete(mid, if_match=current._etag)


# --- delete, not-found, idempotency -----------------------------------------------------------


async def test_delete_is_permanent(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    keep = await methods.create(body_for("password"))
    doomed = await methods.create(body_for("totp"))
    assert await methods.delete(doomed.id) is None  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        await methods.get(doomed.id)  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        await methods.delete(doomed.id)  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        await methods.update(doomed.id, {"name": "zombie"})  # type: ignore[attr-defined]
    assert [m.id async for m in methods.list_all()] == [keep.id]  # type: ignore[attr-defined]


async def test_methods_belong_to_their_issuer(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    other = await admin.issuers.create({"name": f"neighbour-{unique}"})
    mine = await admin.issuer(issuer.id).auth_methods.create(body_for("password"))
    with pytest.raises(NotFoundError):
        await admin.issuer(other.id).auth_methods.get(mine.id)  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        await admin.issuer(other.id).auth_methods.delete(mine.id)  # type: ignore[attr-defined]
    assert (await admin.issuer(other.id).auth_methods.list()).data == []


async def test_unknown_issuer_is_not_found(admin: AuthPIAdmin) -> None:
    missing = admin.issuer("i_" + "0" * 25).auth_methods
    with pytest.raises(NotFoundError):
        await missing.list()
    with pytest.raises(NotFoundError):
        await missing.create(body_for("password"))


async def test_idempotent_create_does_not_conflict(admin: AuthPIAdmin, issuer: Issuer) -> None:
    methods = admin.issuer(issuer.id).auth_methods
    key = str(uuid.uuid4())
    first = await methods.create(body_for("password"), idempotency_key=key)
    again = await methods.create(body_for("password"), idempotency_key=key)
    assert again.id == first.id  # type: ignore[attr-defined]
    assert len((await methods.list()).data) == 1
    # Without the key the duplicate is a conflict.
    with pytest.raises(ConflictError):
        await methods.create(body_for("password"))
