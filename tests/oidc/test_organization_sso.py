"""Enterprise SSO of an organization, end to end against a real OpenID provider: issuer B of the
same server (password sign-in, a confidential client registered with issuer A's SSO callback) is
the organization's provider; issuer A has the organization, its domain verified through the DNS
server in the test process and its ``sso`` block pointing at B. Home-realm discovery, the trip to
B and back, just-in-time user and membership, the ``organizations`` claim, and ``sso_only``."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.db_query import count
from tests.harness import RunningServer, run_server
from tests.local_dns import dns_server
from tests.oidc.helpers import (
    PASSWORD,
    AuthRequest,
    Browser,
    Client,
    Realm,
    callback_params,
    describe,
    form,
    heading,
    is_page,
    new_realm,
    unverified_claims,
)
from tests.oidc.upstream_helpers import SETTINGS

pytestmark = pytest.mark.anyio


@dataclass
class Served:
    server: RunningServer
    records: dict[str, list[str]]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A server that may call itself (its issuer B is the provider) and resolves through our DNS."""
    skip_without_postgres(request.param)
    with (
        dns_server() as (records, port),
        run_server(request.param, {**SETTINGS, "AUTHPI_DNS_NAMESERVERS": f"127.0.0.1:{port}"}) as running,
    ):
        yield Served(running, records)


@pytest.fixture
async def admin(served: Served) -> AsyncIterator[AuthPIAdmin]:
    async with AuthPIAdmin(api_key=served.server.api_key, base_url=served.server.url) as client:
        yield client


@dataclass
class Enterprise:
    provider: Realm  # issuer B, the organization's identity provider
    home: Realm  # issuer A, where the application and the organization live
    app: Client
    org_id: str
    domain: str


async def enterprise(admin: AuthPIAdmin, served: Served, *, sso_only: bool = False) -> Enterprise:
    provider = await new_realm(admin, served.server)
    home = await new_realm(admin, served.server)
    registration = await provider.client()
    domain = f"acme-{secrets.token_hex(3)}.example.com"
    org = await home.api.organizations.create(
        {
            "name": "Acme",
            "default_member_scopes": ["member", "projects:read"],
            "sso": {
                "enabled": True,
                "sso_only": sso_only,
                "issuer_url": provider.url,
                "client_id": registration.id,
                "client_secret": registration.secret,
            },
        }
    )
    assert org.sso is not None and org.sso["client_secret_set"] is True
    redirect_uri = org.sso["redirect_uri"]
    assert redirect_uri == f"{home.url}/sso/{org.id}/callback"
    await provider.api.clients.update(
        registration.id, {"settings": {"openid": {"redirect_uris": [redirect_uri]}}}
    )
    sso = home.api.organization(org.id).sso
    added = await sso.add_domain({"domain": domain})
    served.records[added.txt_record_name] = [added.txt_record_value]
    assert (await sso.verify_domain(domain)).verified is True
    return Enterprise(provider, home, await home.client(), org.id, domain)


async def identifier(browser: Browser, ent: Enterprise, username: str) -> tuple[AuthRequest, httpx.Response]:
    """Open the application's sign-in at A and enter ``username``: the answer, not followed."""
    auth = ent.home.request(ent.app.id)
    login = await browser.get(auth.url)
    assert is_page(login, "login"), describe(login)
    chosen = form(login, "/login")
    answer = await browser.http.post(
        urljoin(str(login.url), chosen.action), data={**chosen.hidden, "username": username}
    )
    return auth, answer


async def sso_sign_in(browser: Browser, ent: Enterprise, username: str) -> dict[str, object]:
    """Identifier at A → B's login → password at B → back at A → code → tokens: the ID token's claims."""
    auth, answer = await identifier(browser, ent, username)
    assert answer.status_code == 303 and answer.headers["location"].startswith(
        f"{ent.provider.url}/authorize?"
    ), describe(answer)
    at_provider = await browser.get(answer.headers["location"])
    assert is_page(at_provider, "login") and at_provider.url.path.startswith(f"/{ent.provider.id}/"), (
        describe(at_provider)
    )
    password_page = await browser.submit(at_provider, {"username": username})
    back = await browser.submit(password_page, {"password": PASSWORD}, action_suffix="/login/password")
    params = callback_params(back)
    assert params.get("state") == auth.state and "code" in params, describe(back)
    exchanged = await ent.home.exchange(ent.app, params["code"], auth)
    assert exchanged.status_code == 200, describe(exchanged)
    return unverified_claims(exchanged.json()["id_token"])


async def test_home_realm_discovery_signs_in_and_provisions_the_member_once(
    admin: AuthPIAdmin, served: Served
) -> None:
    ent = await enterprise(admin, served)
    username = f"alice@{ent.domain}"
    await ent.provider.user(username, email_verified=True, name="Alice")
    async with Browser(served.server.url) as browser:
        claims = await sso_sign_in(browser, ent, username)
    assert "fed" in claims["amr"]  # type: ignore[operator]
    organizations = claims["organizations"]
    assert isinstance(organizations, list) and [o["id"] for o in organizations] == [ent.org_id]
    assert organizations[0]["scopes"] == ["member", "projects:read"]
    user_id = str(claims["sub"])
    server = served.server
    assert (
        await count(server, "organization_memberships", "org_id = ? AND member_id = ?", ent.org_id, user_id)
        == 1
    )
    assert await count(server, "upstream_identities", "org_id = ? AND user_id = ?", ent.org_id, user_id) == 1

    async with Browser(served.server.url) as browser:  # a second sign-in: the same user, one membership
        again = await sso_sign_in(browser, ent, username)
    assert again["sub"] == user_id
    assert (
        await count(server, "organization_memberships", "org_id = ? AND member_id = ?", ent.org_id, user_id)
        == 1
    )
    kinds = {
        e.type
        async for e in admin.events.list_all(
            issuer_id=ent.home.id,
            event_types="user.sso.provisioned,organization.membership.created,user.sso.linked",
        )
    }
    assert kinds == {"user.sso.provisioned", "organization.membership.created"}


async def test_an_existing_user_is_linked_and_the_domain_rules(admin: AuthPIAdmin, served: Served) -> None:
    ent = await enterprise(admin, served)
    bob = f"bob@{ent.domain}"
    existing = await ent.home.user(bob)  # has a password at A already
    await ent.provider.user(bob, email_verified=True)
    async with Browser(served.server.url) as browser:
        claims = await sso_sign_in(browser, ent, bob)
    assert claims["sub"] == existing.id
    kinds = {
        e.type
        async for e in admin.events.list_all(
            issuer_id=ent.home.id, event_types="user.sso.linked,user.sso.provisioned"
        )
    }
    assert kinds == {"user.sso.linked"}

    # The decision reads the domain only: an unknown address of the domain goes to the provider
    # too, and another domain gets the same password page whether or not its user exists.
    async with Browser(served.server.url) as browser:
        _, unknown = await identifier(browser, ent, f"nobody-{secrets.token_hex(2)}@{ent.domain}")
        assert unknown.status_code == 303 and unknown.headers["location"].startswith(
            f"{ent.provider.url}/authorize?"
        )
        await ent.home.user("carol@elsewhere.example.org")
        _, known = await identifier(browser, ent, "carol@elsewhere.example.org")
        _, stranger = await identifier(browser, ent, "dave@elsewhere.example.org")
    assert known.status_code == stranger.status_code == 200
    assert form(known, "/login/password") and form(stranger, "/login/password")

    # The provider vouches only for its organization's domains: a verified address elsewhere is refused.
    outsider = f"eve-{secrets.token_hex(2)}@elsewhere.example.org"
    await ent.provider.user(outsider, email_verified=True)
    async with Browser(served.server.url) as browser:
        auth = ent.home.request(ent.app.id)
        login = await browser.get(auth.url)
        _, sent = await identifier(browser, ent, f"x@{ent.domain}")
        at_provider = await browser.get(sent.headers["location"])
        password_page = await browser.submit(at_provider, {"username": outsider})
        back = await browser.submit(password_page, {"password": PASSWORD}, action_suffix="/login/password")
    assert back.status_code == 403 and "not in a domain of this organization" in back.text, describe(back)
    assert login.status_code == 200
    assert await count(served.server, "users", "issuer_id = ? AND username = ?", ent.home.id, outsider) == 0

    # Switched off, the connection takes nobody anywhere: the domain's users get the password page.
    await ent.home.api.organizations.update(ent.org_id, {"sso": {"enabled": False}})
    async with Browser(served.server.url) as browser:
        _, after = await identifier(browser, ent, bob)
    assert after.status_code == 200 and form(after, "/login/password"), describe(after)


async def test_sso_only_refuses_the_password_of_the_organizations_users(
    admin: AuthPIAdmin, served: Served
) -> None:
    ent = await enterprise(admin, served, sso_only=True)
    frank = f"frank@{ent.domain}"
    await ent.home.user(frank)
    methods = (await ent.home.api.auth_methods.list()).data
    password_method = next(m for m in methods if m.method == "password")
    async with Browser(served.server.url) as browser:
        auth = ent.home.request(ent.app.id)
        login = await browser.get(auth.url)
        # Past the identifier step on purpose: the password method picked for this address.
        picked = form(login, "/login")
        page = await browser._follow(
            await browser.http.post(
                urljoin(str(login.url), f"/{ent.home.id}/login/choose"),
                data={**picked.hidden, "username": frank, "method": password_method.id},
            )
        )
        assert form(page, "/login/password"), describe(page)
        refused = await browser.submit(page, {"password": PASSWORD})
    assert refused.status_code == 403, describe(refused)
    assert heading(refused) and "single sign-on" in refused.text
    assert browser.session_cookie is None

    # Through the connection the same user signs in (and becomes a member).
    await ent.provider.user(frank, email_verified=True)
    async with Browser(served.server.url) as browser:
        claims = await sso_sign_in(browser, ent, frank)
    assert [o["id"] for o in claims["organizations"]] == [ent.org_id]  # type: ignore[union-attr]
