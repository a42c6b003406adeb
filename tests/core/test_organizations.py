"""Organizations, members and groups through authpi-admin against the real server: conventions,
filters, effective scopes, the member limit under concurrency, isolation and scope checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ConflictError, ForbiddenError, NotFoundError, PreconditionFailedError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope
from tests.db_query import count
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def new_user(admin: AuthPIAdmin, issuer_id: str, name: str) -> str:
    user = await admin.issuer(issuer_id).users.create(
        {"username_type": "email", "username": f"{name}@example.com"}
    )
    return user.id


async def test_organization_lifecycle_and_filters(admin: AuthPIAdmin, issuer: Issuer) -> None:
    orgs = admin.issuer(issuer.id).organizations
    acme = await orgs.create(
        {
            "name": "Acme",
            "org_type": "business",
            "max_members": 5,
            "default_member_scopes": ["member", "projects:read", "member"],
            "settings": {"enforce_2fa": True},
            "sso": {
                "enabled": True,
                "sso_only": True,
                "issuer_url": "https://sso.acme.example",
                "client_id": "authpi",
                "client_secret": "s3cret",
            },
            "metadata": {"crm": "1"},
        }
    )
    assert acme.id.startswith("org_") and acme.issuer_id == issuer.id and acme.status == "active"
    assert acme.default_member_scopes == ["member", "projects:read"]
    assert acme.stats == {"n_members": 0} and acme._etag == f'"{acme.updated_at}"'
    plain = await orgs.create({"name": "Plain", "invitation_enabled": False})
    assert plain.org_type == "business" and plain.max_members is None

    assert (await orgs.get(acme.id)).name == "Acme"
    ids = lambda page: [o.id for o in page.data]  # noqa: E731
    assert ids(await orgs.list()) == [plain.id, acme.id]  # newest first
    assert ids(await orgs.list(mfa_required="true")) == [acme.id]
    assert ids(await orgs.list(sso_enabled="true")) == [acme.id]
    assert ids(await orgs.list(sso_only="false")) == [plain.id]
    assert ids(await orgs.list(invitation_enabled="false")) == [plain.id]
    first = await orgs.list(limit=1)
    assert first.has_more and ids(await orgs.list(limit=1, cursor=first.next_cursor)) == [acme.id]

    with pytest.raises(PreconditionFailedError):
        await orgs.update(acme.id, {"name": "x"}, if_match='"1"')
    suspended = await orgs.update(
        acme.id, {"status": "suspended", "status_reason": "unpaid"}, if_match=acme._etag
    )
    assert (suspended.status, suspended.status_reason) == ("suspended", "unpaid")
    assert ids(await orgs.list(status="suspended")) == [acme.id]
    assert (await orgs.update(acme.id, {"status": "active"})).status == "active"

    await orgs.delete(plain.id)
    with pytest.raises(NotFoundError):
        await orgs.get(plain.id)
    assert ids(await orgs.list()) == [acme.id]
    assert ids(await orgs.list(status="deleting")) == [plain.id]

    kinds = [
        e.type
        async for e in admin.events.list_all(
            issuer_id=issuer.id,
            event_types="organization.created,organization.updated,organization.suspended,organization.reactivated,organization.deleted",
        )
    ]
    assert sorted(kinds) == sorted(
        ["organization.created"] * 2
        + ["organization.suspended", "organization.reactivated", "organization.deleted"]
    )


async def test_bad_input_is_refused_with_the_envelope(
    raw: httpx.AsyncClient, account_path: str, issuer: Issuer
) -> None:
    base = f"{account_path}/issuers/{issuer.id}/organizations"
    for body in (
        {},
        {"name": "x", "max_members": 0},
        {"name": "x", "settings": {"enforce_2fa": "yes"}},
        {"name": "x", "settings": {"nope": 1}},
        {"name": "x", "default_member_scopes": ["has space"]},
        {"name": "x", "unknown": 1},
    ):
        answer = await raw.post(base, json=body)
        assert answer.status_code in (400, 422), (body, answer.text)
        assert_error_envelope(answer.json())
    assert (await raw.get(f"{base}?status=gone")).status_code in (400, 422)
    assert (await raw.get(f"{base}/org_nope")).status_code == 404


async def test_members_groups_and_effective_scopes(admin: AuthPIAdmin, issuer: Issuer) -> None:
    iss = admin.issuer(issuer.id)
    org = iss.organization(
        (await iss.organizations.create({"name": "Scoped", "default_member_scopes": ["member"]})).id
    )
    admins = await org.groups.create({"name": "admins", "scopes": ["admin", "users:**", "member"]})
    billing = await org.groups.create({"name": "billing", "scopes": ["billing:write"]})
    with pytest.raises(ConflictError):
        await org.groups.create({"name": "admins"})
    ada, bob = await new_user(admin, issuer.id, "ada"), await new_user(admin, issuer.id, "bob")

    added = await org.members.create({"member_id": ada, "groups": [admins.id], "user_title": "CTO"})
    assert (added.org_id, added.member_id, added.member_type, added.status) == (
        org._org_id,
        ada,
        "user",
        "active",
    )
    assert added.scopes == ["member"] and added.groups == [admins.id] and added.user_title == "CTO"
    plain = await org.members.create({"member_id": bob, "scopes": ["projects:read"]})
    assert plain.scopes == ["projects:read"] and plain.groups == []
    with pytest.raises(ConflictError):
        await org.members.create({"member_id": bob, "scopes": []})
    with pytest.raises(NotFoundError):
        await org.members.create({"member_id": "usr_missing", "scopes": []})

    by_scope = await org.members.list(scope="users:**")
    assert [m.member_id for m in by_scope.data] == [ada]  # through the admins group
    assert [m.member_id for m in (await org.members.list(scope="projects:read")).data] == [bob]

    updated = await org.members.update(bob, {"groups": [billing.id, admins.id], "status": "suspended"})
    assert updated.groups == sorted([billing.id, admins.id]) and updated.status == "suspended"
    assert [m.member_id for m in (await org.members.list(status="suspended")).data] == [bob]
    await org.groups.update(billing.id, {"scopes": ["billing:read"]})
    assert (await org.groups.get(billing.id)).scopes == ["billing:read"]
    await org.groups.delete(billing.id)
    assert (await org.members.list(status="suspended")).data[0].groups == [admins.id]

    await org.members.delete(bob)
    with pytest.raises(NotFoundError):
        await org.members.delete(bob)
    assert (await org.get()).stats == {"n_members": 1}
    # A deleted user leaves the organization and frees the place.
    await iss.users.delete(ada)
    assert (await org.members.list()).data == [] and (await org.get()).stats == {"n_members": 0}


async def test_max_members_holds_under_twenty_concurrent_adds(
    admin: AuthPIAdmin, issuer: Issuer, server: RunningServer
) -> None:
    iss = admin.issuer(issuer.id)
    org_id = (await iss.organizations.create({"name": "Small", "max_members": 7})).id
    users = [await new_user(admin, issuer.id, f"crowd{i}") for i in range(20)]
    org = iss.organization(org_id)

    async def add(user_id: str) -> Any:
        try:
            return await org.members.create({"member_id": user_id, "scopes": ["member"]})
        except ConflictError as exc:
            return exc

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(add(u) for u in users))
    elapsed = time.perf_counter() - started
    admitted = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(admitted) == 7, outcomes
    assert all(isinstance(o, ConflictError) for o in outcomes if o not in admitted)
    assert await count(server, "organization_memberships", "org_id = ?", org_id) == 7
    assert (await org.get()).stats == {"n_members": 7}
    print(f"20 concurrent adds to a 7-place organization: {elapsed:.2f}s")


async def test_isolation_across_issuers_and_accounts(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    raw: httpx.AsyncClient,
    account_path: str,
) -> None:
    org = await admin.issuer(issuer.id).organizations.create({"name": "Mine"})
    elsewhere = await admin.issuers.create({"name": "second issuer"})
    with pytest.raises(NotFoundError):
        await admin.issuer(elsewhere.id).organizations.get(org.id)
    with pytest.raises(NotFoundError):
        await admin.issuer(elsewhere.id).organization(org.id).members.list()
    other_user = await new_user(admin, elsewhere.id, "stranger")
    with pytest.raises(NotFoundError):  # a user of another issuer cannot join
        await (
            admin.issuer(issuer.id)
            .organization(org.id)
            .members.create({"member_id": other_user, "scopes": []})
        )
    async with client_for(other_account["key_id"], other_account["key_secret"]) as theirs:
        with pytest.raises(NotFoundError):
            await theirs.issuer(issuer.id).organizations.get(org.id)
    answer = await raw.get(f"/v1/accounts/{other_account['account_id']}/issuers/{issuer.id}/organizations")
    assert answer.status_code == 404


async def test_each_route_checks_its_scope(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    org = admin.issuer(issuer.id).organization(
        (await admin.issuer(issuer.id).organizations.create({"name": "S"})).id
    )
    group = await org.groups.create({"name": "g"})
    reader = await make_key(
        [
            "issuers.organizations:read",
            "issuers.organizations.members:read",
            "issuers.organizations.groups:read",
        ]
    )
    async with client_for(reader.id, reader.secret_plain) as limited:
        scoped = limited.issuer(issuer.id)
        await scoped.organizations.list()
        await scoped.organization(org._org_id).members.list()
        await scoped.organization(org._org_id).groups.get(group.id)
        for call in (
            lambda: scoped.organizations.create({"name": "no"}),
            lambda: scoped.organization(org._org_id).update({"name": "no"}),
            lambda: scoped.organization(org._org_id).groups.create({"name": "no"}),
            lambda: scoped.organization(org._org_id).members.create({"member_id": "usr_x", "scopes": []}),
            lambda: scoped.organization(org._org_id).invitations.list(),
            lambda: scoped.organization(org._org_id).api_keys.list(),
        ):
            with pytest.raises(ForbiddenError):
                await call()


async def test_organization_api_keys_keyinfo_and_introspection(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, server: RunningServer
) -> None:
    iss = admin.issuer(issuer.id)
    org_id = (await iss.organizations.create({"name": "Keys", "scopes": ["projects:**", "reports:read"]})).id
    org = iss.organization(org_id)
    created = await org.api_keys.create(
        {"name": "ci", "restrictions": {"scopes": ["projects.tasks:write", "reports:read"]}, "tags": ["ci"]}
    )
    assert (
        created.secret_plain.startswith("sk_") and created.org_id == org_id and created.issuer_id == issuer.id
    )
    assert created.type == "api_key" and created.secret["algorithm"] == "sha256"
    assert created.secret["hint"] and created.secret["hint"] in created.secret_plain
    listed = (await org.api_keys.list()).data
    assert [k.id for k in listed] == [created.id] and listed[0].scopes == [
        "projects.tasks:write",
        "reports:read",
    ]
    assert (
        "secret_plain"
        not in (await raw.get(f"{account_path}/issuers/{issuer.id}/organizations/{org_id}/api-keys")).text
    )
    # No escalation past the organization's scopes.
    with pytest.raises(ForbiddenError):
        await org.api_keys.create({"name": "too much", "restrictions": {"scopes": ["billing:write"]}})
    with pytest.raises(ForbiddenError):
        await org.api_keys.create({"name": "wild", "restrictions": {"scopes": ["*:**"]}})

    keyinfo = f"{server.url}/{issuer.id}/keyinfo"
    async with httpx.AsyncClient(timeout=30) as http:
        good = await http.get(keyinfo, auth=(created.id, created.secret_plain))
        assert good.status_code == 200, good.text
        info = good.json()
        assert (info["id"], info["org_id"], info["status"]) == (created.id, org_id, "active")
        assert (
            info["scopes"] == ["projects.tasks:write", "reports:read"]
            and created.secret_plain not in good.text
        )
        bearer = await http.get(
            keyinfo, headers={"Authorization": f"Bearer {created.id}:{created.secret_plain}"}
        )
        assert bearer.status_code == 200
        for auth in ((created.id, "wrong-secret-wrong-secret"), ("key_" + "0" * 32, created.secret_plain)):
            assert (await http.get(keyinfo, auth=auth)).status_code == 401
        assert (await http.get(keyinfo)).status_code == 401
        elsewhere = await admin.issuers.create({"name": "other"})
        assert (
            await http.get(f"{server.url}/{elsewhere.id}/keyinfo", auth=(created.id, created.secret_plain))
        ).status_code == 401

        introspect = f"{account_path}/issuers/{issuer.id}/tokens/introspect"
        seen = (await raw.post(introspect, json={"token": f"{created.id}:{created.secret_plain}"})).json()[
            "data"
        ]
        assert seen["active"] is True and seen["org_id"] == org_id and seen["scopes"] == info["scopes"]

        blocked = await raw.patch(
            f"{account_path}/issuers/{issuer.id}/organizations/{org_id}/api-keys/{created.id}",
            json={"status": "blocked"},
        )
        assert blocked.status_code == 200 and blocked.json()["data"]["status"] == "blocked"
        refused = await http.get(keyinfo, auth=(created.id, created.secret_plain))
        assert refused.status_code == 403 and refused.json()["error"] == "access_denied"
        seen = (await raw.post(introspect, json={"token": f"{created.id}:{created.secret_plain}"})).json()[
            "data"
        ]
        assert seen == {"active": False, "reason": "key_blocked"}
        await raw.patch(
            f"{account_path}/issuers/{issuer.id}/organizations/{org_id}/api-keys/{created.id}",
            json={"status": "active"},
        )
        await iss.organizations.update(org_id, {"status": "suspended"})
        assert (await http.get(keyinfo, auth=(created.id, created.secret_plain))).status_code == 403
    assert [k.id for k in (await org.api_keys.list(status="active")).data] == [created.id]


async def test_idempotent_create_and_etags(raw: httpx.AsyncClient, account_path: str, issuer: Issuer) -> None:
    base = f"{account_path}/issuers/{issuer.id}/organizations"
    headers = {"Idempotency-Key": "org-create-1"}
    first = await raw.post(base, json={"name": "Once"}, headers=headers)
    again = await raw.post(base, json={"name": "Once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    org_id = first.json()["data"]["id"]
    etag = first.headers["etag"]
    assert (
        await raw.patch(f"{base}/{org_id}", json={"name": "x"}, headers={"If-Match": '"1"'})
    ).status_code == 412
    changed = await raw.patch(f"{base}/{org_id}", json={"name": "Twice"}, headers={"If-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert (await raw.delete(f"{base}/{org_id}", headers={"If-Match": etag})).status_code == 412
