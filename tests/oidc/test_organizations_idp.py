"""Organizations in tokens (idp-api §D, decision 18) through the official ``authpi-idp`` SDK: the
claim, the SDK's scope evaluation on real tokens, selected-org tokens, the client restriction, the
org picker, refresh after removal, and an organization that enforces a second factor."""

from __future__ import annotations

from typing import Any

import pytest
from authpi_idp import IdpClient, RefreshError

from tests.oidc.helpers import (
    CALLBACK,
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    form,
    redirect_target,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

EMAIL = "grace@example.com"


async def two_orgs(realm: Realm, user_id: str) -> tuple[str, str]:
    """Acme (owner, plus the engineers group) and Globex (plain member)."""
    orgs = realm.api.organizations
    acme = await orgs.create({"name": "Acme"})
    globex = await orgs.create({"name": "Globex"})
    engineers = await realm.api.organization(acme.id).groups.create(
        {"name": "engineers", "scopes": ["projects:**", "*:read", "owner"]}
    )
    await realm.api.organization(acme.id).members.create(
        {
            "member_id": user_id,
            "scopes": ["owner", "users:read"],
            "groups": [engineers.id],
            "user_title": "Founder",
        }
    )
    await realm.api.organization(globex.id).members.create({"member_id": user_id, "scopes": ["member"]})
    return acme.id, globex.id


async def sign_in(realm: Realm, browser: Browser, idp: IdpClient, org: str | None = None) -> Any:
    auth = idp.create_authorization_url(["openid", "profile", "email"], org=org)
    response = await browser.visit(auth.url, EMAIL)
    return await idp.exchange_callback(redirect_target(response), auth)


async def test_a_user_in_two_orgs_and_the_sdk_rules(realm: Realm, browser: Browser) -> None:
    client = await realm.client("web")
    user = await realm.user(EMAIL)
    acme, globex = await two_orgs(realm, user.id)
    async with IdpClient(
        issuer_url=realm.url, client_id=client.id, client_secret=client.secret, redirect_uri=CALLBACK
    ) as idp:
        agent = await sign_in(realm, browser, idp)
        assert [o.id for o in agent.organizations] == [acme, globex] and agent.org_id is None
        [first, second] = agent.organizations
        # Membership and group scopes, de-duplicated, the membership's own first.
        assert first.scopes == ["owner", "users:read", "projects:**", "*:read"]
        assert (first.title, second.title, second.scopes) == ("Founder", None, ["member"])
        assert first.joined_at > 1_700_000_000
        assert agent.is_member_of(acme) and agent.is_member_of(globex) and not agent.is_member_of("org_x")
        assert agent.is_owner_of(acme) and not agent.is_owner_of(globex)
        assert agent.get_scopes_for(globex) == ["member"] and agent.get_scopes_for("org_x") == []
        # idp-api §D.3's truth table, from the group's projects:** and *:read.
        assert agent.has_access_in(acme, "read", "projects")
        assert agent.has_access_in(acme, "delete", "projects.tasks")
        assert not agent.has_access_in(acme, "write", "users")
        assert agent.has_access_in(acme, "read", "billing")
        assert not agent.has_access_in(acme, "read", "billing.invoices")
        assert not agent.has_access_in(globex, "read", "projects")
        # The access token carries the same claim; userinfo reads it now.
        access = unverified_claims(agent.tokens.access_token)
        assert [o["id"] for o in access["organizations"]] == [acme, globex] and "org_id" not in access
        info = await idp.get_user_info(agent)
        assert [o.id for o in info.organizations or []] == [acme, globex]

        # A group change reaches the next refresh; a suspended org leaves it (no logout).
        await realm.api.organizations.update(globex, {"status": "suspended"})
        refreshed = await idp.refresh(agent)
        assert [o.id for o in refreshed.organizations] == [acme]


async def test_selected_org_tokens_and_refresh_after_removal(realm: Realm, browser: Browser) -> None:
    client = await realm.client("web")
    user = await realm.user(EMAIL)
    acme, globex = await two_orgs(realm, user.id)
    stranger = (await realm.api.organizations.create({"name": "Initech"})).id
    async with IdpClient(
        issuer_url=realm.url, client_id=client.id, client_secret=client.secret, redirect_uri=CALLBACK
    ) as idp:
        agent = await sign_in(realm, browser, idp, org=globex)
        assert agent.org_id == globex and [o.id for o in agent.organizations] == [globex]
        assert unverified_claims(agent.tokens.access_token)["org_id"] == globex
        assert (await idp.get_user_info(agent)).org_id == globex
        refreshed = await idp.refresh(agent)
        assert refreshed.org_id == globex

        # Not a member: access_denied at /authorize (decision 18), state echoed.
        auth = idp.create_authorization_url(["openid"], org=stranger)
        params = callback_params(await browser.visit(auth.url, EMAIL))
        assert params["error"] == "access_denied" and params["state"] == auth.state

        # Removed: the next refresh fails with invalid_grant.
        await realm.api.organization(globex).members.delete(user.id)
        with pytest.raises(RefreshError):
            await idp.refresh(refreshed)
        raw = await realm.refresh(client, refreshed.tokens.refresh_token or "")
        assert raw.status_code == 400 and error_of(raw) == "invalid_grant", describe(raw)
        # The unrestricted token set of the same user still refreshes, without Globex.
        plain = await sign_in(realm, browser, idp)
        assert [o.id for o in plain.organizations] == [acme]


async def test_client_restriction_and_the_org_picker(realm: Realm) -> None:
    user = await realm.user(EMAIL)
    acme, _ = await two_orgs(realm, user.id)
    none = await realm.client("web", organizations={"mode": "none"})
    only_acme = await realm.client("web", organizations={"mode": "allowlist", "allowlist": [acme]})
    assert (await realm.tokens(none, EMAIL))["id_token"]
    assert unverified_claims((await realm.tokens(none, EMAIL))["id_token"])["organizations"] == []
    claims = unverified_claims((await realm.tokens(only_acme, EMAIL))["access_token"])
    assert [o["id"] for o in claims["organizations"]] == [acme]

    picky = await realm.client("web", organizations={"mode": "all", "required": True})
    async with Browser(realm.server_url) as browser:
        auth = realm.request(picky.id)
        page = await browser.visit(auth.url, EMAIL)
        assert page.url.path.endswith("/select-organization"), describe(page)
        assert "Acme" in page.text and "Globex" in page.text
        forged = await browser.submit(page, {"org": "org_not_mine"})
        assert forged.url.path.endswith("/select-organization"), describe(forged)
        chosen = await browser.submit(forged, {"org": acme})
        code = callback_params(chosen)["code"]
    tokens = (await realm.exchange(picky, code, auth)).json()
    assert unverified_claims(tokens["id_token"])["org_id"] == acme


async def test_an_organization_can_require_a_second_factor(realm: Realm, browser: Browser) -> None:
    await realm.api.auth_methods.create(
        {"name": "Authenticator", "method": "totp", "first_factor_only": False}
    )
    client = await realm.client("web")
    user = await realm.user(EMAIL)
    org = await realm.api.organizations.create({"name": "Strict"})
    await realm.api.organization(org.id).members.create({"member_id": user.id, "scopes": ["member"]})
    loose = await browser.visit(realm.request(client.id).url, EMAIL)
    assert "code" in callback_params(loose)
    await realm.api.organizations.update(org.id, {"settings": {"enforce_2fa": True}})
    async with Browser(realm.server_url) as fresh:
        page = await fresh.sign_in(realm.request(client.id).url, EMAIL)
        assert page.url.path.endswith("/mfa/enroll"), describe(page)
        assert form(page).action
