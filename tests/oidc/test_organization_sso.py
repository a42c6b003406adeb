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
    forms,
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


async def _posted(
    browser: Browser, page: httpx.Response, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Post ``page``'s form ending in ``action`` with ``fields``: the answer, not followed (the
    provider is on this same server, so a redirect there would be followed otherwise)."""
    chosen = form(page, action)
    return await browser.http.post(urljoin(str(page.url), chosen.action), data={**chosen.hidden, **fields})


async def test_every_sign_up_method_sends_an_sso_domain_to_the_organizations_provider(
    admin: AuthPIAdmin, served: Served
) -> None:
    """Sign-up follows the sign-in realm: a password, an email code or a passkey for an address of
    the organization's domain goes to its provider (known address or not), creating nothing here;
    another domain signs up as before. Through the provider, JIT creates the user and member."""
    ent = await enterprise(admin, served)
    methods = (await ent.home.api.auth_methods.list()).data
    password_method = next(m for m in methods if m.method == "password")
    await ent.home.api.auth_methods.update(password_method.id, {"enabled_signup": True})
    for body in (
        {"name": "Code", "method": "email_otp", "first_factor_only": True, "enabled_signup": True},
        {
            "name": "Passkey",
            "method": "passkey",
            "first_factor_only": True,
            "settings": {},
            "enabled_signup": True,
        },
    ):
        await ent.home.api.auth_methods.create(body)
    known = f"kim@{ent.domain}"
    await ent.home.user(known)
    unknown = f"new-{secrets.token_hex(2)}@{ent.domain}"
    pages = {"signup": "email", "signup/email-code": "username", "passkey/signup": "email"}
    server = served.server
    for address in (known, unknown):
        for page_name, field in pages.items():
            async with Browser(server.url) as browser:
                auth = ent.home.request(ent.app.id)
                login = await browser.get(auth.url)
                request_id = form(login, "/login").hidden["request"]
                page = await browser.get(f"{ent.home.url}/{page_name}?request={request_id}")
                assert page.status_code == 200, describe(page)
                fields = {field: address, "name": "Kim", "password": "a sign-up password 123"}
                sent = await _posted(browser, page, f"/{page_name}", fields)
            assert sent.status_code == 303 and sent.headers["location"].startswith(
                f"{ent.provider.url}/authorize?"
            ), (address, page_name, describe(sent))
    assert await count(server, "users", "issuer_id = ? AND username = ?", ent.home.id, unknown) == 0
    assert await count(server, "one_time_codes", "issuer_id = ?", ent.home.id) == 0  # no code sent

    # Another domain still signs up with a password (the page asks to sign in with it).
    async with Browser(server.url) as browser:
        login = await browser.get(ent.home.request(ent.app.id).url)
        request_id = form(login, "/login").hidden["request"]
        page = await browser.get(f"{ent.home.url}/signup?request={request_id}")
        other = f"olga-{secrets.token_hex(2)}@elsewhere.example.org"
        done = await _posted(browser, page, "/signup", {"email": other, "password": "a sign-up password 123"})
    assert done.status_code == 200 and form(done, "/login/password"), describe(done)
    assert await count(server, "users", "issuer_id = ? AND username = ?", ent.home.id, other) == 1

    # The organization's provider creates the newcomer (and the membership) just in time. (The
    # passkey's own form on the login page would be taken for the identifier form.)
    for method in (await ent.home.api.auth_methods.list()).data:
        if method.method == "passkey":
            await ent.home.api.auth_methods.delete(method.id)
    await ent.provider.user(unknown, email_verified=True)
    async with Browser(server.url) as browser:
        claims = await sso_sign_in(browser, ent, unknown)
    assert [o["id"] for o in claims["organizations"]] == [ent.org_id]  # type: ignore[union-attr]
    assert await count(server, "users", "issuer_id = ? AND username = ?", ent.home.id, unknown) == 1
    assert server.tracebacks() == []


UNREACHABLE = "http://127.0.0.1:9/unreachable"  # the discard port: nothing listens, refused at once


async def test_an_unreachable_provider_offers_another_way_unless_sso_only(
    admin: AuthPIAdmin, served: Served
) -> None:
    ent = await enterprise(admin, served)
    await ent.home.api.organizations.update(ent.org_id, {"sso": {"issuer_url": UNREACHABLE}})
    gina = f"gina@{ent.domain}"
    await ent.home.user(gina)
    async with Browser(served.server.url) as browser:
        auth, page = await identifier(browser, ent, gina)
        assert page.status_code == 502 and "Acme" in (heading(page) or ""), describe(page)
        assert "cannot be reached" in page.text and "could not be reached" in page.text
        password_page = await browser.submit(page, {}, action_suffix="/login/others")
        assert form(password_page, "/login/password"), describe(password_page)
        back = await browser.submit(password_page, {"password": PASSWORD})
        params = callback_params(back)
    assert params.get("state") == auth.state and "code" in params, describe(back)

    # With sso_only the page names the organization's provider problem and offers no other way;
    # asking for one anyway comes back to the same page.
    await ent.home.api.organizations.update(ent.org_id, {"sso": {"sso_only": True}})
    async with Browser(served.server.url) as browser:
        _, page = await identifier(browser, ent, gina)
        assert page.status_code == 502 and "Acme" in (heading(page) or ""), describe(page)
        assert "signs its members in through its own single sign-on" in page.text
        assert not [f for f in forms(page) if f.action.endswith("/login/others")]
        login = await browser.get(ent.home.request(ent.app.id).url)
        sneaked = await browser.http.post(
            urljoin(str(login.url), f"/{ent.home.id}/login/others"),
            data={**form(login, "/login").hidden, "username": gina},
        )
    assert sneaked.status_code == 502 and "single sign-on" in sneaked.text, describe(sneaked)
    assert browser.session_cookie is None
    assert served.server.tracebacks() == []


async def test_a_member_an_administrator_removed_is_not_made_a_member_again(
    admin: AuthPIAdmin, served: Served
) -> None:
    """DELETE of a membership sticks: the organization's provider still vouches for the person,
    but the next SSO sign-in is refused and creates no membership, until the API adds them back."""
    ent = await enterprise(admin, served)
    hana = f"hana@{ent.domain}"
    await ent.provider.user(hana, email_verified=True)
    async with Browser(served.server.url) as browser:
        claims = await sso_sign_in(browser, ent, hana)
    user_id = str(claims["sub"])
    server = served.server
    members = ent.home.api.organization(ent.org_id).members
    await members.delete(user_id)
    assert await count(
        server, "organization_member_removals", "org_id = ? AND user_id = ?", ent.org_id, user_id
    )

    signed_in = await count(server, "sessions", "user_id = ? AND type = 'op'", user_id)
    async with Browser(server.url) as browser:
        _, sent = await identifier(browser, ent, hana)
        at_provider = await browser.get(sent.headers["location"])
        password_page = await browser.submit(at_provider, {"username": hana})
        back = await browser.submit(password_page, {"password": PASSWORD}, action_suffix="/login/password")
    assert back.status_code == 403 and "removed you from this organization" in back.text, describe(back)
    assert await count(server, "sessions", "user_id = ? AND type = 'op'", user_id) == signed_in
    memberships = "org_id = ? AND member_id = ?"
    assert await count(server, "organization_memberships", memberships, ent.org_id, user_id) == 0

    # Added back through the API: the removal is forgotten and SSO sign-ins work again.
    await members.create({"member_id": user_id, "scopes": ["member"]})
    assert not await count(server, "organization_member_removals", "user_id = ?", user_id)
    async with Browser(server.url) as browser:
        again = await sso_sign_in(browser, ent, hana)
    assert again["sub"] == user_id and [o["id"] for o in again["organizations"]] == [ent.org_id]  # type: ignore[union-attr]
    assert await count(server, "organization_memberships", memberships, ent.org_id, user_id) == 1
    assert server.tracebacks() == []
