"""What the provider must refuse, one rule per test: sign-in failures, lockout and rate limits,
redirect-URI and PKCE rules, code and refresh-token misuse, disabled clients and suspended users,
prompt / max_age / consent, client authentication, token-endpoint hygiene, signup and CSRF."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

import anyio
import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import (
    CALLBACK,
    LOGOUT_CALLBACK,
    OTHER_CALLBACK,
    PASSWORD,
    Browser,
    Realm,
    basic,
    callback_params,
    describe,
    error_of,
    error_text,
    form,
    heading,
    is_page,
    new_realm,
    random_token,
    realm_on,
    redirect_target,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

EMAIL = "user@example.com"
WRONG = "not the password at all"


@pytest.fixture(scope="module")
def limited_server() -> Iterator[RunningServer]:
    """A server with low per-IP limits (SQLite: the limiter does not depend on the database)."""
    env = {
        "AUTHPI_RATE_LIMITS_ENABLED": "true",
        "AUTHPI_RATE_LIMIT_LOGIN": "3/minute",
        "AUTHPI_RATE_LIMIT_TOKEN": "5/minute",
    }
    with run_server("sqlite", env) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def short_code_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server whose authorization codes live one second."""
    skip_without_postgres(request.param)
    with run_server(request.param, {"AUTHPI_CODE_TTL": "1"}) as running:
        yield running


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """An HTML error page from the provider itself: never a redirect to an unvalidated URI."""
    assert response.status_code == status, describe(response)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert (response.status_code, error_of(response)) == (status, error), describe(response)
    assert "no-store" in response.headers["cache-control"]


# --- signing in ------------------------------------------------------------------------------------


async def test_wrong_password_does_not_reveal_whether_the_account_exists(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    known = await browser.password_page(realm.request(client.id).url, EMAIL)
    unknown = await browser.password_page(realm.request(client.id).url, "nobody@example.com")
    # The identifier step asks for a password either way.
    assert heading(known) == heading(unknown) and form(known).hidden.keys() == form(unknown).hidden.keys()

    wrong = await browser.submit(known, {"password": WRONG})
    nobody = await browser.submit(unknown, {"password": WRONG})
    assert wrong.status_code == nobody.status_code == 400
    assert "location" not in wrong.headers and browser.session_cookie is None
    assert error_text(wrong) and error_text(wrong) == error_text(nobody)


async def test_five_failures_lock_the_password_even_against_the_right_one(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    other = await realm.user("someone.else@example.com")
    page = await browser.password_page(realm.request(client.id).url, EMAIL)
    for _ in range(5):
        page = await browser.submit(page, {"password": WRONG})
        assert page.status_code == 400, describe(page)
    generic = error_text(page)

    locked = await browser.submit(page, {"password": PASSWORD})
    assert locked.status_code == 400 and "location" not in locked.headers, describe(locked)
    assert error_text(locked) != generic  # the lockout says so, instead of "wrong password"
    assert browser.session_cookie is None and await realm.sessions(user.id) == []
    # The lock is on that credential only.
    async with Browser(realm.server_url) as fresh:
        params = callback_params(await fresh.sign_in(realm.request(client.id).url, other.username))
    assert "code" in params


async def test_lockout_looks_the_same_for_an_unknown_username(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    known = await browser.password_page(realm.request(client.id).url, EMAIL)
    async with Browser(realm.server_url) as other:
        unknown = await other.password_page(realm.request(client.id).url, "ghost@example.com")
        for _ in range(6):
            known = await browser.submit(known, {"password": WRONG})
            unknown = await other.submit(unknown, {"password": WRONG})
    assert known.status_code == unknown.status_code == 400
    # Both now show the lockout message, so it does not reveal which account exists.
    assert "Too many failed attempts" in error_text(known)
    assert error_text(known) == error_text(unknown)


async def test_login_posts_are_rate_limited_per_ip(limited_server: RunningServer) -> None:
    async with realm_on(limited_server) as realm, Browser(limited_server.url) as browser:
        client = await realm.client()
        await realm.user(EMAIL)
        page = await browser.password_page(realm.request(client.id).url, EMAIL)
        for _ in range(3):  # AUTHPI_RATE_LIMIT_LOGIN=3/minute
            page = await browser.submit(page, {"password": WRONG})
            assert page.status_code == 400, describe(page)
        limited = await browser.submit(page, {"password": PASSWORD})
    assert_error_page(limited, 429)
    assert 0 < int(limited.headers["retry-after"]) <= 60


async def test_token_requests_are_rate_limited_per_ip(limited_server: RunningServer) -> None:
    async with realm_on(limited_server) as realm:
        m2m = await realm.client("m2m", scopes=["reports:read"])
        for _ in range(5):  # AUTHPI_RATE_LIMIT_TOKEN=5/minute
            ok = await realm.token(m2m, grant_type="client_credentials")
            assert ok.status_code == 200, describe(ok)
        limited = await realm.token(m2m, grant_type="client_credentials")
    assert limited.status_code == 429, describe(limited)
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert error_of(limited) and limited.json()["error_description"]


# --- redirect URIs and PKCE --------------------------------------------------------------------------


async def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    response = await browser.http.get(realm.request(client.id, redirect_uri="https://evil.example/cb").url)
    assert_error_page(response)
    assert "evil.example" not in response.text
    missing = await browser.http.get(f"{realm.url}/authorize?client_id={client.id}&response_type=code")
    assert_error_page(missing)


async def test_redirect_uri_must_match_exactly(realm: Realm, browser: Browser) -> None:
    with_query = "http://127.0.0.1:9/landing?tenant=a"
    client = await realm.client(redirect_uris=[CALLBACK, with_query])
    near_misses = [
        f"{CALLBACK}/",
        f"{CALLBACK}?next=1",
        "http://127.0.0.1:10/callback",  # a web client gets no loopback port leeway
        "http://127.0.0.1:9/Callback",
        "http://127.0.0.1:9/landing",
        "http://127.0.0.1:9/landing?tenant=b",
        "http://127.0.0.1:9/landing?tenant=a&x=1",
    ]
    for uri in near_misses:
        assert_error_page(await browser.http.get(realm.request(client.id, redirect_uri=uri).url))
    await realm.user(EMAIL)
    response = await browser.sign_in(realm.request(client.id, redirect_uri=with_query).url, EMAIL)
    target = redirect_target(response)
    assert target.startswith(f"{with_query}&code="), target  # the registered query is kept


async def test_loopback_redirect_any_port_only_for_native_clients(realm: Realm, browser: Browser) -> None:
    registered = ["http://127.0.0.1/callback", "http://[::1]/callback"]
    native = await realm.client("native", redirect_uris=registered)
    web = await realm.client("web", redirect_uris=registered)
    assert native.settings["openid"]["application_type"] == "native"
    await realm.user(EMAIL)
    runtime = "http://127.0.0.1:49152/callback"

    assert_error_page(await browser.http.get(realm.request(web.id, redirect_uri=runtime).url))
    for other in ("http://127.0.0.1:49152/elsewhere", "http://localhost:49152/callback"):
        assert_error_page(await browser.http.get(realm.request(native.id, redirect_uri=other).url))
    ipv6 = await browser.get(realm.request(native.id, redirect_uri="http://[::1]:50123/callback").url)
    assert is_page(ipv6, "login"), describe(ipv6)

    auth = realm.request(native.id, redirect_uri=runtime)
    response = await browser.sign_in(auth.url, EMAIL)
    assert redirect_target(response).startswith(f"{runtime}?code=")
    code = callback_params(response)["code"]
    # The token request must repeat the exact runtime URI, port included.
    assert_oauth_error(
        await realm.exchange(native, code, auth, redirect_uri="http://127.0.0.1:49153/callback"),
        "invalid_grant",
    )
    code, auth = await realm.code(browser, native, EMAIL, redirect_uri=runtime)
    assert (await realm.exchange(native, code, auth)).status_code == 200


async def test_public_client_without_pkce_gets_an_error_redirect(realm: Realm, browser: Browser) -> None:
    spa = await realm.client("spa")
    auth = realm.request(spa.id, pkce=False)
    params = callback_params(await browser.http.get(auth.url))
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]
    assert params["state"] == auth.state and params["iss"] == realm.url


async def test_plain_code_challenge_method_is_refused(realm: Realm, browser: Browser) -> None:
    for client in (await realm.client("spa"), await realm.client("web")):
        verifier = random_token(48)
        auth = realm.request(client.id, pkce=False, code_challenge=verifier, code_challenge_method="plain")
        params = callback_params(await browser.http.get(auth.url))
        assert (params["error"], params["state"]) == ("invalid_request", auth.state)


async def test_wrong_or_missing_code_verifier_is_invalid_grant(realm: Realm, browser: Browser) -> None:
    await realm.user(EMAIL)
    for client in (await realm.client("spa"), await realm.client("web")):
        code, auth = await realm.code(browser, client, EMAIL)
        assert_oauth_error(
            await realm.exchange(client, code, auth, code_verifier=random_token(48)), "invalid_grant"
        )
        code, auth = await realm.code(browser, client, EMAIL)
        auth.verifier = None
        assert_oauth_error(await realm.exchange(client, code, auth), "invalid_grant")


async def test_token_request_redirect_uri_must_match_the_authorization(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client(redirect_uris=[CALLBACK, OTHER_CALLBACK])
    await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    assert_oauth_error(await realm.exchange(client, code, auth, redirect_uri=OTHER_CALLBACK), "invalid_grant")


# --- codes and refresh tokens ----------------------------------------------------------------------


async def test_code_reuse_revokes_what_the_code_issued(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    first = await realm.exchange(client, code, auth)
    assert first.status_code == 200, describe(first)
    tokens = first.json()

    assert_oauth_error(await realm.exchange(client, code, auth), "invalid_grant")
    assert_oauth_error(await realm.refresh(client, tokens["refresh_token"]), "invalid_grant")
    assert await realm.introspect(client, tokens["access_token"]) == {"active": False}
    assert await realm.introspect(client, tokens["refresh_token"]) == {"active": False}
    rp = await realm.api.sessions.get(unverified_claims(tokens["access_token"])["sid"])
    assert rp.status == "revoked" and rp.revoked_reason == "authorization_code_reuse"


async def test_expired_code_is_invalid_grant(short_code_server: RunningServer) -> None:
    async with realm_on(short_code_server) as realm, Browser(short_code_server.url) as browser:
        client = await realm.client()
        await realm.user(EMAIL)
        code, auth = await realm.code(browser, client, EMAIL)
        await anyio.sleep(2.1)  # AUTHPI_CODE_TTL=1
        assert_oauth_error(await realm.exchange(client, code, auth), "invalid_grant")


async def test_refresh_token_reuse_revokes_the_family_and_flags_the_session(realm: Realm) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    tokens = await realm.tokens(client, EMAIL)
    rotated = await realm.refresh(client, tokens["refresh_token"])
    assert rotated.status_code == 200, describe(rotated)
    newest = rotated.json()

    assert_oauth_error(await realm.refresh(client, tokens["refresh_token"]), "invalid_grant")
    assert_oauth_error(await realm.refresh(client, newest["refresh_token"]), "invalid_grant")
    assert await realm.introspect(client, newest["access_token"]) == {"active": False}
    session = await realm.api.sessions.get(unverified_claims(tokens["access_token"])["sid"])
    assert session.status == "revoked"
    assert session.compromised is True and session.compromised_reason == "refresh_token_reuse"


# --- clients, users and issuers -------------------------------------------------------------------


async def test_disabled_client_is_refused_everywhere(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    tokens = await realm.tokens(client, EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    await realm.api.clients.update(client.id, {"status": "disabled"})

    assert_error_page(await browser.http.get(realm.request(client.id).url))
    assert_oauth_error(await realm.exchange(client, code, auth), "invalid_client", 401)
    assert_oauth_error(await realm.refresh(client, tokens["refresh_token"]), "invalid_client", 401)


async def test_suspended_user_cannot_sign_in_or_refresh(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    tokens = await realm.tokens(client, EMAIL)
    await realm.code(browser, client, EMAIL)  # the browser holds a session too
    await realm.api.users.update(user.id, {"status": "suspended"})

    assert_oauth_error(await realm.refresh(client, tokens["refresh_token"]), "invalid_grant")
    async with httpx.AsyncClient() as http:
        info = await http.get(
            f"{realm.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    assert info.status_code == 401
    # The old browser session no longer signs anyone in, and the password is refused with a page.
    refused = await browser.sign_in(realm.request(client.id).url, EMAIL)
    assert refused.status_code == 400 and "location" not in refused.headers
    assert error_text(refused)


async def test_code_is_bound_to_its_issuer(
    realm: Realm, browser: Browser, admin: AuthPIAdmin, server: RunningServer
) -> None:
    other = await new_realm(admin, server)
    client, stranger = await realm.client(), await other.client()
    await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    # Issuer A's client does not exist at issuer B; B's own client cannot redeem A's code.
    assert_oauth_error(await other.exchange(client, code, auth), "invalid_client", 401)
    assert_oauth_error(await other.exchange(stranger, code, auth), "invalid_grant")


# --- prompt, max_age and consent ------------------------------------------------------------------


async def test_prompt_none_without_a_session_is_login_required(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    auth = realm.request(client.id, prompt="none")
    params = callback_params(await browser.get(auth.url))
    assert (params["error"], params["state"]) == ("login_required", auth.state)
    await realm.code(browser, client, EMAIL)
    silent = callback_params(await browser.get(realm.request(client.id, prompt="none").url))
    assert "code" in silent  # with a session the same request succeeds silently


async def test_prompt_login_forces_the_login_page(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    await realm.code(browser, client, EMAIL)
    assert "code" in callback_params(await browser.get(realm.request(client.id).url))  # SSO
    forced = await browser.get(realm.request(client.id, prompt="login").url)
    assert is_page(forced, "login"), describe(forced)


async def test_max_age_zero_forces_a_new_login(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    await realm.code(browser, client, EMAIL)
    recent = await browser.get(realm.request(client.id, max_age="3600").url)
    assert "code" in callback_params(recent)
    auth = realm.request(client.id, max_age="0")
    forced = await browser.get(auth.url)
    assert is_page(forced, "login"), describe(forced)
    password = await browser.submit(forced, {"username": EMAIL})
    assert "code" in callback_params(await browser.submit(password, {"password": PASSWORD}))


async def test_prompt_consent_shows_the_consent_page_and_deny_is_access_denied(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    await realm.code(browser, client, EMAIL)  # no consent needed without prompt=consent
    auth = realm.request(client.id, prompt="consent")
    page = await browser.get(auth.url)
    assert is_page(page, "consent") and "profile" in page.text, describe(page)
    denied = callback_params(await browser.submit(page, {"decision": "deny"}))
    assert (denied["error"], denied["state"]) == ("access_denied", auth.state)


async def test_require_consent_asks_until_the_user_allows(realm: Realm, browser: Browser) -> None:
    client = await realm.client(require_consent=True)
    await realm.user(EMAIL)
    auth = realm.request(client.id, scope="openid email")
    page = await browser.sign_in(auth.url, EMAIL)
    assert is_page(page, "consent"), describe(page)
    silent = realm.request(client.id, scope="openid email", prompt="none")
    assert callback_params(await browser.get(silent.url))["error"] == "consent_required"
    allowed = callback_params(await browser.submit(page, {"decision": "allow"}))
    assert (await realm.exchange(client, allowed["code"], auth)).status_code == 200
    # Remembered for those scopes; asked again for more.
    assert "code" in callback_params(await browser.get(realm.request(client.id, scope="openid email").url))
    wider = await browser.get(realm.request(client.id, scope="openid email phone").url)
    assert is_page(wider, "consent"), describe(wider)


# --- logout ---------------------------------------------------------------------------------------


async def test_logout_without_id_token_hint_needs_a_confirmed_post(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    await realm.code(browser, client, EMAIL)
    query = {"client_id": client.id, "post_logout_redirect_uri": LOGOUT_CALLBACK, "state": "s-1"}
    page = await browser.get(f"{realm.url}/logout?{urlencode(query)}")
    assert page.status_code == 200 and form(page, "/logout"), describe(page)
    # A cross-site POST without the CSRF token only gets the confirmation page again.
    forged = await browser.http.post(f"{realm.url}/logout", data={**query, "confirm": "yes"})
    assert forged.status_code == 200 and "location" not in forged.headers
    assert "revoked" not in {s.status for s in await realm.sessions(user.id)}

    done = await browser.submit(page, {})
    assert redirect_target(done) == f"{LOGOUT_CALLBACK}?state=s-1"
    assert {s.status for s in await realm.sessions(user.id)} == {"revoked"}


async def test_logout_never_redirects_to_an_unregistered_uri(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    tokens = await realm.tokens(client, EMAIL)
    for target in ("https://evil.example/bye", f"{LOGOUT_CALLBACK}/"):
        query = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": target}
        assert_error_page(await browser.http.get(f"{realm.url}/logout?{urlencode(query)}"))
    # Without a known client nothing is registered, so nothing may be redirected to.
    unknown = {"post_logout_redirect_uri": LOGOUT_CALLBACK}
    assert_error_page(await browser.http.get(f"{realm.url}/logout?{urlencode(unknown)}"))


# --- token endpoint hygiene and client authentication -----------------------------------------------


async def test_token_userinfo_and_introspection_are_not_cacheable(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    issued = await realm.exchange(client, code, auth)
    assert issued.status_code == 200 and "no-store" in issued.headers["cache-control"]
    access = issued.json()["access_token"]
    async with httpx.AsyncClient() as http:
        info = await http.get(f"{realm.url}/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert info.status_code == 200 and "no-store" in info.headers["cache-control"]
    described = await realm.post("introspect", {"token": access}, basic(client))
    assert described.status_code == 200 and "no-store" in described.headers["cache-control"]
    assert_oauth_error(await realm.exchange(client, code, auth), "invalid_grant")  # errors too


async def test_wrong_client_secret_is_invalid_client(realm: Realm) -> None:
    m2m = await realm.client("m2m", scopes=["reports:read"])
    grant = {"grant_type": "client_credentials"}
    wrong = await realm.post("token", grant, httpx.BasicAuth(m2m.id, "cs_wrong"))
    assert_oauth_error(wrong, "invalid_client", 401)
    assert wrong.headers["www-authenticate"].lower().startswith("basic")
    for body in (
        {**grant, "client_id": m2m.id, "client_secret": "cs_wrong"},
        {**grant, "client_id": m2m.id},  # a confidential client without its secret
        {**grant, "client_id": "c_unknown", "client_secret": m2m.secret or ""},
    ):
        assert_oauth_error(await realm.post("token", body), "invalid_client", 401)


async def test_credentials_in_header_and_body_is_invalid_request(realm: Realm) -> None:
    m2m = await realm.client("m2m", scopes=["reports:read"])
    both = await realm.post(
        "token",
        {"grant_type": "client_credentials", "client_id": m2m.id, "client_secret": m2m.secret or ""},
        httpx.BasicAuth(m2m.id, m2m.secret or ""),
    )
    assert_oauth_error(both, "invalid_request")


async def test_unsupported_grant_type(realm: Realm) -> None:
    client = await realm.client()
    for grant in ("password", "urn:ietf:params:oauth:grant-type:device_code", "implicit"):
        response = await realm.token(client, grant_type=grant, username=EMAIL, password=PASSWORD)
        assert_oauth_error(response, "unsupported_grant_type")


# --- signup and CSRF --------------------------------------------------------------------------------


async def test_signup_creates_an_active_user_who_then_signs_in_with_the_password(
    admin: AuthPIAdmin, server: RunningServer, browser: Browser
) -> None:
    realm = await new_realm(admin, server, signup=True)
    client = await realm.client()
    auth = realm.request(client.id)
    login = await browser.get(auth.url)
    link = re.search(r'href="([^"]*/signup\?request=[^"]+)"', login.text)
    assert link, describe(login)
    signup = await browser.get(urljoin(str(login.url), html.unescape(link.group(1))))
    assert signup.status_code == 200 and form(signup, "/signup"), describe(signup)

    # Sign-up answers alike whether or not the address is taken, so it signs nobody in by itself:
    # it leads to the password step of the same authorization request.
    done = await browser.submit(
        signup, {"email": "New.Person@example.com", "name": "New Person", "password": PASSWORD}
    )
    assert done.status_code == 200 and form(done, "/login/password"), describe(done)
    assert browser.session_cookie is None
    params = callback_params(await browser.submit(done, {"password": PASSWORD}))
    assert params["state"] == auth.state and browser.session_cookie
    tokens = (await realm.exchange(client, params["code"], auth)).json()
    claims = unverified_claims(tokens["id_token"])
    assert (claims["email"], claims["name"], claims["nonce"]) == (
        "New.Person@example.com",
        "New Person",
        auth.nonce,
    )
    user = await realm.api.users.get(claims["sub"])
    assert user.status == "active" and user.username == "New.Person@example.com"
    # The new account signs in with its password like any other.
    assert "access_token" in await realm.tokens(client, "new.person@example.com")


async def test_password_post_needs_the_csrf_token_of_this_browser(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    page = await browser.password_page(realm.request(client.id).url, EMAIL)
    genuine = {**form(page, "/login/password").hidden, "password": PASSWORD}
    target = f"{realm.url}/login/password"
    forged = [
        {k: v for k, v in genuine.items() if k != "csrf"},
        {**genuine, "csrf": "0" * 64},
    ]
    for data in forged:
        assert_error_page(await browser.http.post(target, data=data), 403)
    async with Browser(realm.server_url) as attacker:  # a valid token, but not this browser's cookie
        assert_error_page(await attacker.http.post(target, data=genuine), 403)
    assert browser.session_cookie is None and await realm.sessions(user.id) == []
    # The genuine form still works.
    assert "code" in callback_params(await browser.submit(page, {"password": PASSWORD}))


async def test_nul_characters_in_forms_are_refused_not_stored(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    page = await browser.password_page(realm.request(client.id).url, EMAIL)
    poisoned = await browser.submit(page, {"username": "a\x00b@example.com", "password": WRONG})
    assert poisoned.status_code == 400 and "location" not in poisoned.headers
    token = await realm.token(client, grant_type="authorization_code", code="x\x00y", redirect_uri=CALLBACK)
    assert_oauth_error(token, "invalid_request")
