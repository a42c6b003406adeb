"""Sessions through the Core API: user and issuer session lists, get, revoke/suspend/reactivate.

Sessions only come into being when a user signs in at the IdP, and these tests may not write rows
into the database themselves. So here we cover the shapes, filters, 404s, isolation and scopes that
hold with no sign-in; the full lifecycle (listing a live session, revoke with op→rp cascade,
suspend/reactivate, ETags on actions, sessions revoked when a user is suspended, disabled or deleted,
or a client deleted) is covered by the OIDC end-to-end tests, which sign users in for real.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, NotFoundError, ValidationError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope, field_names

pytestmark = pytest.mark.anyio

STATUSES = ("inactive", "active", "suspended", "revoked", "expired")


async def _user_id(admin: AuthPIAdmin, issuer: Issuer, name: str) -> str:
    user = await admin.issuer(issuer.id).users.create({"username_type": "unique-name", "username": name})
    return user.id


async def test_user_sessions_list_is_empty_before_any_sign_in(admin: AuthPIAdmin, issuer: Issuer) -> None:
    sessions = admin.issuer(issuer.id).user(await _user_id(admin, issuer, "nobody-yet")).sessions
    listed = await sessions.list()
    assert listed.data == [] and listed.has_more is False and listed.next_cursor is None
    assert [s async for s in sessions.list_all()] == []
    for status in STATUSES:
        filtered = await sessions.list(status=status)
        assert filtered.data == [] and filtered.has_more is False


async def test_user_sessions_wire_shape(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    user_id = await _user_id(admin, issuer, "wire-shape")
    response = await raw.get(f"{account_path}/issuers/{issuer.id}/users/{user_id}/sessions")
    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False, "next_cursor": None}


async def test_user_sessions_reject_an_unknown_status(admin: AuthPIAdmin, issuer: Issuer) -> None:
    sessions = admin.issuer(issuer.id).user(await _user_id(admin, issuer, "bad-filter")).sessions
    with pytest.raises(ValidationError) as exc:
        await sessions.list(status="alive")
    assert "status" in field_names(exc.value.fields)


async def test_user_sessions_of_missing_or_deleted_users_are_not_found(
    admin: AuthPIAdmin, issuer: Issuer
) -> None:
    with pytest.raises(NotFoundError):
        await admin.issuer(issuer.id).user("usr_doesnotexist").sessions.list()
    user_id = await _user_id(admin, issuer, "soon-gone")
    await admin.issuer(issuer.id).users.delete(user_id)
    with pytest.raises(NotFoundError):
        await admin.issuer(issuer.id).user(user_id).sessions.list()


async def test_issuer_sessions_list(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    user_id = await _user_id(admin, issuer, "issuer-list")
    path = f"{account_path}/issuers/{issuer.id}/sessions"
    for params in ({}, {"limit": "1"}, {"status": "active"}, {"user_id": user_id, "status": "expired"}):
        response = await raw.get(path, params=params)
        assert response.status_code == 200, response.text
        assert response.json() == {"data": [], "has_more": False, "next_cursor": None}
    for params in ({"status": "alive"}, {"limit": "0"}, {"limit": "101"}):
        response = await raw.get(path, params=params)
        assert response.status_code == 400, params
        assert_error_envelope(response.json(), "invalid_request")


@pytest.mark.parametrize("action", ["get", "revoke", "suspend", "reactivate"])
async def test_unknown_sessions_are_not_found(admin: AuthPIAdmin, issuer: Issuer, action: str) -> None:
    sessions = admin.issuer(issuer.id).sessions
    call: Any = getattr(sessions, action)
    with pytest.raises(NotFoundError) as exc:
        await call("s_doesnotexist")
    assert exc.value.error == "not_found"


async def test_revoke_and_suspend_accept_a_reason_body(admin: AuthPIAdmin, issuer: Issuer) -> None:
    sessions = admin.issuer(issuer.id).sessions
    with pytest.raises(NotFoundError):
        await sessions.revoke("s_doesnotexist", {"reason": "lost device"})
    with pytest.raises(NotFoundError):
        await sessions.suspend("s_doesnotexist", {"reason": "investigation", "by": "agent-7"})
    with pytest.raises(ValidationError) as exc:
        await sessions.revoke("s_doesnotexist", {"why": "typo"})
    assert "why" in field_names(exc.value.fields)


async def test_another_accounts_issuer_is_not_found(
    admin: AuthPIAdmin, other_account: dict[str, str], client_for: ClientFactory, unique: str
) -> None:
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        theirs = await other.issuers.create({"name": f"theirs-{unique}"})
        their_user = await other.issuer(theirs.id).users.create(
            {"username_type": "unique-name", "username": f"u{unique}"}
        )
        assert (await other.issuer(theirs.id).user(their_user.id).sessions.list()).data == []
    with pytest.raises(NotFoundError):
        await admin.issuer(theirs.id).user(their_user.id).sessions.list()
    with pytest.raises(NotFoundError):
        await admin.issuer(theirs.id).sessions.get("s_anything")
    with pytest.raises(NotFoundError):
        await admin.issuer(theirs.id).sessions.revoke("s_anything")


async def test_scopes_are_enforced(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    user_id = await _user_id(admin, issuer, "scoped")
    key = await make_key(["issuers.users.sessions:read"])
    async with client_for(key.id, key.secret_plain) as user_sessions_reader:
        assert (await user_sessions_reader.issuer(issuer.id).user(user_id).sessions.list()).data == []
        with pytest.raises(ForbiddenError):
            await user_sessions_reader.issuer(issuer.id).sessions.get("s_anything")
    key = await make_key(["issuers.sessions:read"])
    async with client_for(key.id, key.secret_plain) as reader:
        with pytest.raises(NotFoundError):  # allowed to look, and there is nothing
            await reader.issuer(issuer.id).sessions.get("s_anything")
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).sessions.revoke("s_anything")
        with pytest.raises(ForbiddenError):
            await reader.issuer(issuer.id).user(user_id).sessions.list()
    key = await make_key(["issuers.sessions:write"])
    async with client_for(key.id, key.secret_plain) as writer:
        for action in (
            writer.issuer(issuer.id).sessions.suspend,
            writer.issuer(issuer.id).sessions.reactivate,
        ):
            with pytest.raises(NotFoundError):
                await action("s_anything")
