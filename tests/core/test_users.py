"""Users (decision 24): usernames per type, uniqueness, password policy, profile, status, lists."""

from __future__ import annotations

import hashlib
import re
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


def email(name: str, **extra: Any) -> dict[str, Any]:
    return {"username_type": "email", "username": f"{name}@example.com", **extra}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def codes(exc: ValidationError, field: str) -> set[str]:
    return {f["code"] for f in exc.fields if f["field"] == field}


def mentions_password(value: Any) -> bool:
    if isinstance(value, dict):
        return any("password" in key or mentions_password(v) for key, v in value.items())
    return False


# --- create ------------------------------------------------------------------------------------


async def test_create_and_get_a_full_user(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    users = admin.issuer(issuer.id).users
    body = {
        "username_type": "email",
        "username": "  Alice.Smith@Example.COM ",
        "password": "correct horse battery",
        "profile": {
            "first_name": "Alice",
            "last_name": "Smith",
            "display_name": "Alice S.",
            "picture": "https://cdn.example.com/alice.png",
            "locale": "en-GB",
            "email_verified": True,
            "favourite_colour": "teal",
        },
        "scopes": ["docs:read", "docs:write"],
        "metadata": {"crm_id": "42"},
        "custom_fields": {"plan": "pro", "seats": 3},
        "preferences": {"theme": "dark"},
    }
    created = await users.create(body)
    assert re.fullmatch(r"usr_[0-9a-z]{25}", created.id)
    assert created.issuer_id == issuer.id
    assert (created.username_type, created.username) == ("email", "Alice.Smith@example.com")
    assert created.status == "active" and created.status_at is not None
    assert created.profile == body["profile"]
    assert created.scopes == ["docs:read", "docs:write"]
    assert created.metadata is not None and created.metadata.model_dump() == {"crm_id": "42"}
    assert created.custom_fields == {"plan": "pro", "seats": 3}
    assert created.preferences == {"theme": "dark"}
    assert created.created_at > 10**12 and created._etag == f'"{created.updated_at}"'

    fetched = await users.get(created.id)
    assert fetched == created and fetched._etag == created._etag
    assert (await admin.issuer(issuer.id).user(created.id).get()).id == created.id
    path = f"{account_path}/issuers/{issuer.id}/users/{created.id}"
    response = await raw.get(path)
    assert not mentions_password(response.json()["data"]), response.text
    assert "correct horse" not in response.text and "argon2" not in response.text

    [row] = [u async for u in users.list_all()]
    assert row.user_id == created.id and row.issuer_id == issuer.id
    assert row.username_hash == sha256("alice.smith@example.com")
    assert (row.username_type, row.status, row.store_id, row.region) == ("email", "active", "default", None)
    assert row.created_at == created.created_at and row.updated_at == created.updated_at


async def test_get_answers_what_create_answered(
    issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    """The read route builds its body from plain columns, the write routes from the entity: the
    same user must look the same through both, byte for byte after parsing, ETag included."""
    path = f"{account_path}/issuers/{issuer.id}/users"
    body = email(
        "same-both-ways",
        profile={"first_name": "Sam", "email_verified": True, "nested": {"a": [1, 2]}},
        scopes=["docs:read"],
        metadata={"crm_id": "7"},
        custom_fields={"plan": "pro"},
        preferences={"theme": "light"},
    )
    created = await raw.post(path, json=body)
    assert created.status_code == 201, created.text
    user_id = created.json()["data"]["id"]
    fetched = await raw.get(f"{path}/{user_id}")
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert fetched.headers["etag"] == created.headers["etag"]
    patched = await raw.patch(f"{path}/{user_id}", json={"profile": {"first_name": "Samuel"}})
    assert patched.status_code == 200, patched.text
    refetched = await raw.get(f"{path}/{user_id}")
    assert refetched.json() == patched.json() and refetched.headers["etag"] == patched.headers["etag"]


async def test_get_of_a_user_under_an_unknown_issuer_names_the_issuer(
    issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    created = await raw.post(f"{account_path}/issuers/{issuer.id}/users", json=email("named-404"))
    user_id = created.json()["data"]["id"]
    unknown_issuer = await raw.get(f"{account_path}/issuers/i_doesnotexist/users/{user_id}")
    assert unknown_issuer.status_code == 404
    assert "Issuer" in unknown_issuer.json()["error_description"]
    unknown_user = await raw.get(f"{account_path}/issuers/{issuer.id}/users/usr_doesnotexist")
    assert unknown_user.status_code == 404
    assert "User" in unknown_user.json()["error_description"]


async def test_minimal_user_defaults(admin: AuthPIAdmin, issuer: Issuer) -> None:
    created = await admin.issuer(issuer.id).users.create(email("minimal"))
    assert created.profile == {} and created.scopes is None
    assert created.custom_fields is None and created.preferences is None
    assert created.status == "active" and created.status_reason is None


@pytest.mark.parametrize(
    ("username_type", "given", "stored"),
    [
        ("email", "Bob@Example.com", "Bob@example.com"),
        ("phone", "+14155550123", "+14155550123"),
        ("phone", "+1 (415) 555-0199", "+14155550199"),
        ("unique-name", "bob.smith_99", "bob.smith_99"),
        ("unique-name", "B-o", "B-o"),
    ],
)
async def test_valid_usernames(
    admin: AuthPIAdmin, issuer: Issuer, username_type: str, given: str, stored: str
) -> None:
    created = await admin.issuer(issuer.id).users.create({"username_type": username_type, "username": given})
    assert created.username == stored and created.username_type == username_type


@pytest.mark.parametrize(
    ("username_type", "given", "field"),
    [
        ("email", "not-an-email", "username"),
        ("email", "a@b", "username"),
        ("phone", "4155550123", "username"),
        ("phone", "+0123456789", "username"),
        ("phone", "+12345", "username"),
        ("unique-name", "ab", "username"),
        ("unique-name", "has space", "username"),
        ("unique-name", "x" * 65, "username"),
        ("unique-name", "bob@home", "username"),
        ("nickname", "bob", "username_type"),
    ],
)
async def test_invalid_usernames(
    admin: AuthPIAdmin, issuer: Issuer, username_type: str, given: str, field: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        await admin.issuer(issuer.id).users.create({"username_type": username_type, "username": given})
    assert field in field_names(exc.value.fields), exc.value.fields


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x@example.com"}, "username_type"),
        ({"username_type": "email"}, "username"),
        ({**email("p"), "profile": {"email_verified": "yes"}}, "profile.email_verified"),
        ({**email("p"), "profile": {"first_name": 7}}, "profile.first_name"),
        ({**email("p"), "profile": "Alice"}, "profile"),
        ({**email("p"), "scopes": ["two words"]}, "scopes"),
        ({**email("p"), "status": "deleted"}, "status"),
        ({**email("p"), "nickname": "p"}, "nickname"),
    ],
)
async def test_invalid_create_bodies(
    admin: AuthPIAdmin, issuer: Issuer, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        await admin.issuer(issuer.id).users.create(body)
    assert field in field_names(exc.value.fields), exc.value.fields


async def test_usernames_are_unique_per_issuer(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    users = admin.issuer(issuer.id).users
    await users.create(email("Carol"))
    with pytest.raises(ConflictError):
        await users.create(email("carol"))
    with pytest.raises(ConflictError):
        await users.create({"username_type": "email", "username": "CAROL@EXAMPLE.COM"})
    await users.create({"username_type": "unique-name", "username": "Dave"})
    with pytest.raises(ConflictError):
        await users.create({"username_type": "unique-name", "username": "dave"})
    await users.create({"username_type": "phone", "username": "+447700900123"})
    with pytest.raises(ConflictError):
        await users.create({"username_type": "phone", "username": "+44 7700 900123"})

    other = await admin.issuers.create({"name": f"other-{unique}"})
    elsewhere = await admin.issuer(other.id).users.create(email("carol"))
    assert elsewhere.username == "carol@example.com"


async def test_created_suspended(admin: AuthPIAdmin, issuer: Issuer) -> None:
    created = await admin.issuer(issuer.id).users.create(
        email("held", status="suspended", status_reason="KYC pending", status_by="ops")
    )
    assert (created.status, created.status_reason, created.status_by) == ("suspended", "KYC pending", "ops")


# --- passwords ---------------------------------------------------------------------------------


async def test_password_policy_of_the_password_method(admin: AuthPIAdmin, issuer: Issuer) -> None:
    await admin.issuer(issuer.id).auth_methods.create(
        {  # type: ignore[arg-type]
            "name": "Password",
            "method": "password",
            "first_factor_only": True,
            "settings": {"min_length": 12, "require_digit": True, "require_uppercase": True},
        }
    )
    users = admin.issuer(issuer.id).users
    with pytest.raises(ValidationError) as short:
        await users.create(email("weak", password="Short1"))
    assert field_names(short.value.fields) == {"password"}
    assert "too_short" in codes(short.value, "password")
    with pytest.raises(ValidationError) as plain:
        await users.create(email("weak", password="long enough but plain"))
    assert codes(plain.value, "password") == {"missing_digit", "missing_uppercase"}
    assert [u async for u in users.list_all()] == []  # the failed attempts created nothing

    strong = await users.create(email("strong", password="Long enough 4 sure"))
    with pytest.raises(ValidationError) as weak_update:
        await users.update(strong.id, {"password": "tooShort1"})
    assert field_names(weak_update.value.fields) == {"password"}
    changed = await users.update(strong.id, {"password": "Another long one 5"}, if_match=strong._etag)
    assert changed._etag != strong._etag and not mentions_password(changed.model_dump())
    removed = await users.update(strong.id, {"password": None})
    assert removed.updated_at is not None and changed.updated_at is not None
    assert removed.updated_at > changed.updated_at


async def test_symbols_and_max_length(admin: AuthPIAdmin, issuer: Issuer) -> None:
    await admin.issuer(issuer.id).auth_methods.create(
        {  # type: ignore[arg-type]
            "name": "Password",
            "method": "password",
            "first_factor_only": True,
            "settings": {
                "min_length": 8,
                "max_length": 16,
                "require_symbol": True,
                "require_lowercase": True,
            },
        }
    )
    users = admin.issuer(issuer.id).users
    with pytest.raises(ValidationError) as no_symbol:
        await users.create(email("s1", password="abcdefgh1"))
    assert codes(no_symbol.value, "password") == {"missing_symbol"}
    with pytest.raises(ValidationError) as too_long:
        await users.create(email("s2", password="abcdefgh!" * 2))
    assert codes(too_long.value, "password") == {"too_long"}
    with pytest.raises(ValidationError) as upper_only:
        await users.create(email("s3", password="ABCDEFG!"))
    assert codes(upper_only.value, "password") == {"missing_lowercase"}
    assert (await users.create(email("s4", password="abcdefg!"))).status == "active"


async def test_default_policy_without_a_password_method(admin: AuthPIAdmin, issuer: Issuer) -> None:
    users = admin.issuer(issuer.id).users
    with pytest.raises(ValidationError) as exc:
        await users.create(email("nomethod", password="1234567"))
    assert codes(exc.value, "password") == {"too_short"}
    assert (await users.create(email("nomethod", password="12345678"))).status == "active"


# --- update ------------------------------------------------------------------------------------


async def test_update_replaces_objects_and_checks_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    users = admin.issuer(issuer.id).users
    created = await users.create(
        email("erin", profile={"first_name": "Erin", "last_name": "Old"}, metadata={"a": "1"})
    )
    updated = await users.update(
        created.id,
        {
            "profile": {"first_name": "Erin", "locale": "fr"},
            "scopes": ["billing:read"],
            "metadata": {"b": "2"},
            "custom_fields": {"tier": "gold"},
            "preferences": {"newsletter": False},
        },
        if_match=created._etag,
    )
    assert updated.profile == {"first_name": "Erin", "locale": "fr"}  # replaced, not merged
    assert updated.scopes == ["billing:read"]
    assert updated.metadata is not None and updated.metadata.model_dump() == {"b": "2"}
    assert updated.custom_fields == {"tier": "gold"} and updated.preferences == {"newsletter": False}
    assert updated._etag != created._etag

    with pytest.raises(PreconditionFailedError) as stale:
        await users.update(created.id, {"scopes": []}, if_match=created._etag)
    assert stale.value.current_etag == updated._etag
    assert (await users.get(created.id)).scopes == ["billing:read"]

    cleared = await users.update(created.id, {"scopes": None, "custom_fields": None})
    assert cleared.scopes is None and cleared.custom_fields is None

    with pytest.raises(ValidationError) as immutable:
        await users.update(created.id, {"username": "someone@example.com"})
    assert codes(immutable.value, "username") == {"immutable"}
    assert (await users.update(created.id, {"username": "erin@example.com"})).username == "erin@example.com"
    with pytest.raises(ValidationError) as unknown:
        await users.update(created.id, {"password_hash": "x"})
    assert "password_hash" in field_names(unknown.value.fields)


async def test_status_lifecycle(admin: AuthPIAdmin, issuer: Issuer) -> None:
    users = admin.issuer(issuer.id).users
    created = await users.create(email("frank"))
    suspended = await users.update(
        created.id, {"status": "suspended", "status_reason": "Chargeback", "status_by": "agent-7"}
    )
    assert (suspended.status, suspended.status_reason, suspended.status_by) == (
        "suspended",
        "Chargeback",
        "agent-7",
    )
    assert suspended.status_at is not None and created.status_at is not None
    assert suspended.status_at >= created.status_at
    disabled = await users.update(created.id, {"status": "disabled"})
    assert disabled.status == "disabled" and disabled.status_reason is None
    active = await users.update(created.id, {"status": "active", "status_reason": "Resolved"})
    assert (active.status, active.status_reason) == ("active", "Resolved")
    noted = await users.update(created.id, {"status_reason": "Still fine"})
    assert (noted.status, noted.status_reason, noted.status_at) == ("active", "Still fine", active.status_at)
    for bad in ("deleted", "pending_approval", "frozen"):
        with pytest.raises(ValidationError) as exc:
            await users.update(created.id, {"status": bad})
        assert "status" in field_names(exc.value.fields)
    assert [u.user_id async for u in users.list_all(status="active")] == [created.id]
    assert [u async for u in users.list_all(status="suspended")] == []


# --- delete ------------------------------------------------------------------------------------


async def test_soft_delete_frees_the_username(admin: AuthPIAdmin, issuer: Issuer) -> None:
    users = admin.issuer(issuer.id).users
    created = await users.create(email("gina"))
    with pytest.raises(PreconditionFailedError):
        await users.delete(created.id, if_match='"1"')
    await admin.issuer(issuer.id).user(created.id).delete(if_match=created._etag)
    with pytest.raises(NotFoundError):
        await users.get(created.id)
    with pytest.raises(NotFoundError):
        await users.update(created.id, {"status": "active"})
    with pytest.raises(NotFoundError):
        await users.delete(created.id)
    assert [u async for u in users.list_all()] == []
    [gone] = [u async for u in users.list_all(status="deleted")]
    assert gone.user_id == created.id and gone.status == "deleted"
    assert gone.username_hash == sha256("gina@example.com")

    again = await users.create(email("Gina"))
    assert again.id != created.id and again.username == "Gina@example.com"


# --- lists -------------------------------------------------------------------------------------


async def test_list_pages_newest_first(admin: AuthPIAdmin, issuer: Issuer) -> None:
    users = admin.issuer(issuer.id).users
    ids = [(await users.create(email(f"page{n}"))).id for n in range(5)]
    first = await users.list(limit=2)
    assert [u.user_id for u in first.data] == ids[::-1][:2]
    assert first.has_more and first.next_cursor == ids[3]
    assert [u.user_id async for u in users.list_all(limit=2)] == ids[::-1]
    tail = await users.list(limit=2, cursor=ids[1])
    assert [u.user_id for u in tail.data] == [ids[0]] and not tail.has_more and tail.next_cursor is None


async def test_q_matches_exact_username_or_id(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    users = admin.issuer(issuer.id).users
    hana = await users.create(email("Hana.K"))
    ivan = await users.create({"username_type": "phone", "username": "+33612345678"})
    jo = await users.create({"username_type": "unique-name", "username": "Jo_2"})
    path = f"{account_path}/issuers/{issuer.id}/users"

    async def found(q: str, **params: str) -> list[str]:
        response = await raw.get(path, params={"q": q, **params})
        assert response.status_code == 200, response.text
        return [row["user_id"] for row in response.json()["data"]]

    assert await found("hana.k@EXAMPLE.com") == [hana.id]
    assert await found("+33 6 12 34 56 78") == [ivan.id]
    assert await found("jo_2") == [jo.id]
    assert await found(ivan.id) == [ivan.id]
    assert await found("hana") == []
    assert await found("example.com") == []
    assert await found("hana.k@example.com", status="suspended") == []


# --- isolation, scopes -------------------------------------------------------------------------


async def test_other_issuers_and_accounts_are_not_found(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    unique: str,
) -> None:
    mine = await admin.issuer(issuer.id).users.create(email("mine"))
    sibling = await admin.issuers.create({"name": f"sibling-{unique}"})
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).users.get(mine.id)
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).users.delete(mine.id)
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).users.get(mine.id)
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).users.list()
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).users.create(email("intruder"))
    assert (await admin.issuer(issuer.id).users.get(mine.id)).status == "active"


async def test_scopes_are_enforced(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    existing = await admin.issuer(issuer.id).users.create(email("scoped"))
    key = await make_key(["issuers.users:read"])
    async with client_for(key.id, key.secret_plain) as reader:
        assert (await reader.issuer(issuer.id).users.get(existing.id)).id == existing.id
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).users.create(email("nope"))
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).users.delete(existing.id)
    key = await make_key(["issuers.users:write"])
    async with client_for(key.id, key.secret_plain) as writer:
        created = await writer.issuer(issuer.id).users.create(email("by-writer"))
        assert created.status == "active"
