"""GET /v1/me, accounts (list/get/update with If-Match) and isolation between accounts."""

from __future__ import annotations

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import (
    AuthenticationError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, field_names
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def test_whoami_shape(admin: AuthPIAdmin, server: RunningServer) -> None:
    me = await admin.whoami()
    assert me["type"] == "api_key"
    assert me["key_id"] == server.key_id
    assert me["user_id"] is None
    assert me["issuer_id"] is None
    assert me["organizations"] == []
    assert len(me["accounts"]) == 1
    access = me["accounts"][0]
    assert access["account_id"] == server.account_id
    # An account is a facade over an organization sharing its suffix.
    assert access["org_id"] == "org_" + server.account_id.removeprefix("acc_")
    assert access["scopes"] == ["*"]


async def test_whoami_reports_the_key_scopes(make_key: KeyMaker, client_for: ClientFactory) -> None:
    key = await make_key(["issuers:read", "webhooks:manage"])
    async with client_for(key.id, key.secret_plain) as client:
        me = await client.whoami()
    assert me["key_id"] == key.id
    assert me["accounts"][0]["scopes"] == ["issuers:read", "webhooks:manage"]


async def test_account_is_resolved_through_me_without_account_id(
    server: RunningServer, make_key: KeyMaker, client_for: ClientFactory, unique: str
) -> None:
    key = await make_key(["issuers:write"])
    async with client_for(key.id, key.secret_plain) as client:
        created = await client.issuers.create({"name": f"resolved-{unique}"})
        page = await client.issuers.list(q=f"resolved-{unique}")
    assert created.account_id == server.account_id
    assert [item.id for item in page.data] == [created.id]


async def test_a_key_without_scopes_still_resolves_its_account(
    server: RunningServer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    key = await make_key([])
    async with client_for(key.id, key.secret_plain) as client:
        me = await client.whoami()
        assert me["accounts"][0]["account_id"] == server.account_id
        assert me["accounts"][0]["scopes"] == []
        # Resolution works, the scope check then denies the call.
        with pytest.raises(ForbiddenError):
            await client.issuers.list()


async def test_accounts_list_shows_exactly_the_callers_account(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    page = await admin.accounts.list()
    assert [account.id for account in page.data] == [server.account_id]
    assert page.has_more is False
    assert page.next_cursor is None
    assert [account.id async for account in admin.accounts.list_all(limit=1)] == [server.account_id]


async def test_accounts_get(admin: AuthPIAdmin, server: RunningServer) -> None:
    account = await admin.accounts.get(server.account_id)
    assert account.id == server.account_id
    assert account.organization.id == "org_" + server.account_id.removeprefix("acc_")
    assert account.organization.org_type == "business"
    assert account.organization.status == "active"
    assert account.billing_mode == "ungated"
    assert account.payment_methods == []
    assert isinstance(account.created_at, int) and account.created_at > 10**12  # milliseconds
    assert account._etag == f'"{account.updated_at}"'


async def test_accounts_update_with_if_match(admin: AuthPIAdmin, server: RunningServer, unique: str) -> None:
    before = await admin.accounts.get(server.account_id)
    assert before._etag is not None
    updated = await admin.accounts.update(
        server.account_id,
        {"name": f"Acme {unique}", "description": "Our account", "metadata": {"team": unique}},
        if_match=before._etag,
    )
    assert updated.organization.name == f"Acme {unique}"
    assert updated.organization.description == "Our account"
    assert updated.metadata is not None
    assert updated.metadata.model_dump() == {"team": unique}
    assert updated._etag is not None and updated._etag != before._etag

    with pytest.raises(PreconditionFailedError) as stale:
        await admin.accounts.update(server.account_id, {"name": "Lost update"}, if_match=before._etag)
    assert stale.value.current_etag == updated._etag

    again = await admin.accounts.get(server.account_id)
    assert again.organization.name == f"Acme {unique}"
    assert again._etag == updated._etag


async def test_accounts_update_rejects_unknown_fields(admin: AuthPIAdmin, server: RunningServer) -> None:
    with pytest.raises(ValidationError) as invalid:
        await admin.accounts.update(server.account_id, {"nmae": "typo"})
    assert invalid.value.status_code == 400
    assert "nmae" in field_names(invalid.value.fields)


async def test_accounts_get_of_an_unknown_account_is_not_found(admin: AuthPIAdmin) -> None:
    with pytest.raises(NotFoundError):
        await admin.accounts.get("acc_" + "0" * 25)


# --- isolation between accounts (decision 7) ---------------------------------------------------


async def test_other_account_sees_its_own_identity(
    other_account: dict[str, str], client_for: ClientFactory, server: RunningServer
) -> None:
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        me = await other.whoami()
        assert me["accounts"][0]["account_id"] == other_account["account_id"]
        page = await other.accounts.list()
        assert [a.id for a in page.data] == [other_account["account_id"]]


async def test_another_accounts_issuer_is_not_found_never_forbidden(
    issuer: Issuer, other_account: dict[str, str], client_for: ClientFactory, server: RunningServer
) -> None:
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        # Through its own account path: the issuer does not exist there.
        with pytest.raises(NotFoundError):
            await other.issuers.get(issuer.id)
        with pytest.raises(NotFoundError):
            await other.issuer(issuer.id).auth_methods.list()
        with pytest.raises(NotFoundError):
            await other.issuers.update(issuer.id, {"name": "hijacked"})
        with pytest.raises(NotFoundError):
            await other.issuers.delete(issuer.id)
        listed = [item.id async for item in other.issuers.list_all()]
        assert issuer.id not in listed

    # Through the first account's path: that whole account does not exist for this key.
    async with client_for(
        other_account["key_id"], other_account["key_secret"], account_id=server.account_id
    ) as other:
        for call in (
            other.issuers.get(issuer.id),
            other.issuers.list(),
            other.api_keys.list(),
            other.accounts.get(server.account_id),
            other.accounts.update(server.account_id, {"name": "hijacked"}),
        ):
            with pytest.raises(NotFoundError):
                await call


async def test_another_accounts_api_key_is_not_found(
    admin: AuthPIAdmin, other_account: dict[str, str], make_key: KeyMaker, client_for: ClientFactory
) -> None:
    mine = await make_key(["issuers:read"])
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        for call in (
            other.api_keys.get(mine.id),
            other.api_keys.block(mine.id),
            other.api_keys.delete(mine.id),
        ):
            with pytest.raises(NotFoundError):
                await call
    # Still intact and usable.
    assert (await admin.api_keys.get(mine.id)).status == "active"


async def test_the_other_account_key_is_rejected_with_a_wrong_secret(
    other_account: dict[str, str], client_for: ClientFactory
) -> None:
    async with client_for(other_account["key_id"], other_account["key_secret"] + "x") as other:
        with pytest.raises(AuthenticationError):
            await other.whoami()


async def test_raw_other_account_path_is_404_json(
    raw: httpx.AsyncClient, other_account: dict[str, str]
) -> None:
    response = await raw.get(f"/v1/accounts/{other_account['account_id']}/issuers")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
