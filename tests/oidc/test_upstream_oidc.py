"""Sign-in through an upstream OpenID provider, against a real one: another issuer of the same
server, so discovery, the authorization request, the code exchange with PKCE, the ID token's
signature and nonce and the user info are all the genuine article."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import pytest
from authpi_admin import AuthPIAdmin

from tests.db_query import rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    Browser,
    callback_params,
    describe,
    fetch_jwks,
    form,
    heading,
    verify_id_token,
)
from tests.oidc.upstream_helpers import (
    Federation,
    fed_server,  # noqa: F401 (fixture)
    federated_sign_in,
    federation,
    press_button,
    prove_and_link,
    query_of,
    upstream_login,
    with_query,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def admin(fed_server: RunningServer) -> AsyncIterator[AuthPIAdmin]:  # noqa: F811
    async with AuthPIAdmin(api_key=fed_server.api_key, base_url=fed_server.url) as client:
        yield client


async def signed_in_subject(fed: Federation, browser: Browser, username: str) -> str:
    """A full federated sign-in ending with tokens from the downstream issuer: the user's ID."""
    auth, page = await federated_sign_in(browser, fed, username)
    params = callback_params(page)
    assert params.get("state") == auth.state and "code" in params, params
    exchanged = await fed.downstream.exchange(fed.app, params["code"], auth)
    assert exchanged.status_code == 200, describe(exchanged)
    tokens = exchanged.json()
    keys = await fetch_jwks(f"{fed.downstream.url}/jwks.json")
    token = tokens["id_token"]
    alg = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"]
    claims = verify_id_token(
        token,
        keys,
        alg,
        iss=fed.downstream.url,
        client_id=fed.app.id,
        nonce=auth.nonce,
        access_token=tokens["access_token"],
    )
    assert "fed" in claims.get("amr", ["fed"])
    subject: str = claims["sub"]
    return subject


async def test_new_identity_signs_up_and_returns_to_the_same_user(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("alice@example.com", email_verified=True, name="Alice Upstream")
    async with Browser(fed_server.url) as browser:
        first = await signed_in_subject(fed, browser, "alice@example.com")
    [listed] = (await fed.downstream.api.users.list()).data
    user = await fed.downstream.api.users.get(listed.user_id)
    assert user.id == first and user.username == "alice@example.com"
    assert (user.profile or {}).get("name") == "Alice Upstream"
    async with Browser(fed_server.url) as browser:  # another browser, another upstream sign-in
        assert await signed_in_subject(fed, browser, "alice@example.com") == first
    assert len((await fed.downstream.api.users.list()).data) == 1
    types = [e.type async for e in admin.events.list_all(limit=100, issuer_id=fed.downstream.id)]
    assert "user.sso.provisioned" in types and "user.sso.linked" not in types


async def test_existing_account_is_linked_only_after_its_own_sign_in(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("bob@example.com", email_verified=True)
    existing = await fed.downstream.user("bob@example.com")
    async with Browser(fed_server.url) as browser:
        _, page = await federated_sign_in(browser, fed, "bob@example.com")
        assert page.status_code == 409 and heading(page) and "Link your" in str(heading(page)), describe(page)
        assert "account_linking_required" in page.text
        # Nothing is linked yet: a fresh browser lands on the same question.
        async with Browser(fed_server.url) as other:
            _, again = await federated_sign_in(other, fed, "bob@example.com")
            assert again.status_code == 409, describe(again)
        # The user proves the existing account with its password, in this browser.
        done = await prove_and_link(browser, page, "bob@example.com")
        assert "code" in callback_params(done)
    async with Browser(fed_server.url) as browser:
        assert await signed_in_subject(fed, browser, "bob@example.com") == existing.id
    types = [e.type async for e in admin.events.list_all(limit=100, issuer_id=fed.downstream.id)]
    assert "user.sso.linked" in types


async def test_linking_is_declined_with_an_oauth_error(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("carol@example.com", email_verified=True)
    await fed.downstream.user("carol@example.com")
    async with Browser(fed_server.url) as browser:
        auth, page = await federated_sign_in(browser, fed, "carol@example.com")
        declined = await browser.submit(page, {}, action_suffix="/social/decline")
        params = callback_params(declined)
        assert params["error"] == "account_linking_required" and params["state"] == auth.state


async def test_unverified_email_never_links_nor_signs_up(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("dave@example.com", email_verified=False)
    await fed.upstream.user("erin@example.com", email_verified=False)
    dave = await fed.downstream.user("dave@example.com")
    for username in ("dave@example.com", "erin@example.com"):
        async with Browser(fed_server.url) as browser:
            _, page = await federated_sign_in(browser, fed, username)
            assert page.status_code == 403 and heading(page) == "Email address not verified", describe(page)
    assert [u.user_id for u in (await fed.downstream.api.users.list()).data] == [dave.id]


async def test_sign_up_closed_creates_nobody(admin: AuthPIAdmin, fed_server: RunningServer) -> None:  # noqa: F811
    fed = await federation(admin, fed_server, signup=False)
    await fed.upstream.user("frank@example.com", email_verified=True)
    async with Browser(fed_server.url) as browser:
        _, page = await federated_sign_in(browser, fed, "frank@example.com")
        assert page.status_code == 403 and heading(page) == "No account", describe(page)
    assert (await fed.downstream.api.users.list()).data == []


async def test_tampered_nonce_state_and_pkce_are_refused(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("gina@example.com", email_verified=True)
    cases = {
        "nonce": ("nonce", "a-nonce-this-sign-in-never-sent", 502, "nonce"),
        "pkce": ("code_challenge", "A" * 43, 502, "token request"),
    }
    for name, (param, value, status, reason) in cases.items():
        async with Browser(fed_server.url) as browser:
            _, location = await press_button(browser, fed)
            answer = await upstream_login(browser, with_query(location, **{param: value}), "gina@example.com")
            page = await browser.get(urljoin(str(answer.url), answer.headers["location"]))
            assert page.status_code == status and reason in page.text, (name, describe(page))

    async with Browser(fed_server.url) as browser, Browser(fed_server.url) as elsewhere:
        _, location = await press_button(browser, fed)
        answer = await upstream_login(browser, location, "gina@example.com")
        callback = urljoin(str(answer.url), answer.headers["location"])
        forged = await browser.get(with_query(callback, state="forged-state"))
        assert forged.status_code == 400 and heading(forged) == "Sign-in expired", describe(forged)
        stolen = await elsewhere.get(callback)  # the same answer in another browser
        assert stolen.status_code == 400 and heading(stolen) == "Sign-in expired", describe(stolen)
        replayed = await browser.get(callback)  # the stolen attempt spent it
        assert replayed.status_code == 400, describe(replayed)
    assert (await fed.downstream.api.users.list()).data == []


async def test_access_denied_and_bad_configuration_end_on_a_page(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    async with Browser(fed_server.url) as browser:
        _, location = await press_button(browser, fed)
        state = query_of(location)["state"]
        denied = await browser.get(f"{fed.callback_url()}?state={state}&error=access_denied")
        assert denied.status_code == 400 and heading(denied) == "Sign-in cancelled", describe(denied)
    broken = await federation(admin, fed_server, client_secret="not-the-secret")
    await broken.upstream.user("hal@example.com", email_verified=True)
    async with Browser(fed_server.url) as browser:
        _, page = await federated_sign_in(browser, broken, "hal@example.com")
        assert page.status_code == 502 and "refused the token request" in page.text, describe(page)
    # An issuer URL with nothing behind it: the button answers with a page, not a 500.
    nowhere = await fed.downstream.api.auth_methods.create(
        {
            "name": "Nowhere",
            "method": "oidc",
            "first_factor_only": True,
            "settings": {"issuer_url": "http://127.0.0.1:9/nothing", "client_id": "c", "client_secret": "s"},
        }
    )
    async with Browser(fed_server.url) as browser:
        login = await browser.get(fed.downstream.request(fed.app.id).url)
        button = form(login, f"/social/{nowhere.id}/start")
        page = await browser.http.post(urljoin(str(login.url), button.action), data=button.hidden)
        assert page.status_code == 502 and "could not be reached" in page.text, describe(page)
    assert fed_server.tracebacks() == []


async def test_upstream_key_rotation_is_followed(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("ivy@example.com", email_verified=True)
    async with Browser(fed_server.url) as browser:
        first = await signed_in_subject(fed, browser, "ivy@example.com")
    before = {key.kid for key in (await fetch_jwks(f"{fed.upstream.url}/jwks.json")).keys}
    rotated = fed_server.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    # The server's key cache (AUTHPI_KEY_CACHE_SECONDS=1) refreshes behind a stale answer.
    for _ in range(50):
        await asyncio.sleep(0.2)
        after = {key.kid for key in (await fetch_jwks(f"{fed.upstream.url}/jwks.json")).keys}
        if after - before:
            break
    else:
        raise AssertionError("the upstream issuer never published its new keys")
    async with Browser(fed_server.url) as browser:
        assert await signed_in_subject(fed, browser, "ivy@example.com") == first


async def test_buttons_on_the_login_and_signup_pages(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    featured = await fed.downstream.api.auth_methods.create(
        {
            "name": "Featured",
            "method": "oidc",
            "first_factor_only": True,
            "featured": True,
            "enabled_signup": True,
            "settings": {"issuer_url": fed.upstream.url, "client_id": "c", "client_secret": "s"},
        }
    )
    [password] = [m for m in (await fed.downstream.api.auth_methods.list()).data if m.method == "password"]
    await fed.downstream.api.auth_methods.update(password.id, {"enabled_signup": True})
    async with Browser(fed_server.url) as browser:
        login = await browser.get(fed.downstream.request(fed.app.id).url)
        assert login.text.index(f"/social/{featured.id}/start") < login.text.index(
            f"/social/{fed.method_id}/start"
        )
        assert "Continue with Featured" in login.text
        signup = await browser.get(str(login.url).replace("/login?", "/signup?"))
        assert signup.status_code == 200 and "Sign up with Featured" in signup.text, describe(signup)


async def test_the_same_callback_fired_at_once_signs_in_once(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("jay@example.com", email_verified=True)
    async with Browser(fed_server.url) as browser:
        _, location = await press_button(browser, fed)
        answer = await upstream_login(browser, location, "jay@example.com")
        callback = urljoin(str(answer.url), answer.headers["location"])
        answers = await asyncio.gather(*(browser.http.get(callback) for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303, 400, 400, 400], [describe(a) for a in answers]
    assert len((await fed.downstream.api.users.list()).data) == 1


async def test_upstream_tokens_are_kept_only_when_asked_and_then_sealed(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    plain = await federation(admin, fed_server)
    keeping = await federation(admin, fed_server, store_tokens=True)
    for fed in (plain, keeping):
        await fed.upstream.user("kim@example.com", email_verified=True)
        async with Browser(fed_server.url) as browser:
            await signed_in_subject(fed, browser, "kim@example.com")
    stored = {
        method_id: sealed
        for method_id, sealed in await rows(
            fed_server,
            "SELECT method_id, sealed_tokens FROM upstream_identities WHERE method_id IN (?, ?)",
            plain.method_id,
            keeping.method_id,
        )
    }
    assert stored[plain.method_id] is None
    sealed = stored[keeping.method_id]
    assert isinstance(sealed, str) and "eyJ" not in sealed and "access_token" not in sealed


async def test_the_issuers_mfa_rules_apply_after_an_upstream_first_factor(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.downstream.api.auth_methods.create(
        {"name": "Authenticator", "method": "totp", "first_factor_only": False}
    )
    await admin.issuers.update(fed.downstream.id, {"settings": {"security": {"mfa": {"required": True}}}})
    await fed.upstream.user("lee@example.com", email_verified=True)
    async with Browser(fed_server.url) as browser:
        _, page = await federated_sign_in(browser, fed, "lee@example.com")
        assert page.status_code == 200 and page.url.path.endswith("/mfa/enroll"), describe(page)


async def test_private_addresses_are_refused_without_the_setting(server: RunningServer) -> None:
    """Decision 32: a provider URL that resolves to this machine is not reachable by default, so
    an administrator's configuration cannot probe the server's network."""
    assert server.env.get("AUTHPI_ALLOW_PRIVATE_NETWORKS", "false") == "false"
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as local_admin:
        fed = await federation(local_admin, server)
    async with Browser(server.url) as browser:
        login = await browser.get(fed.downstream.request(fed.app.id).url)
        button = form(login, f"/social/{fed.method_id}/start")
        page = await browser.http.post(urljoin(str(login.url), button.action), data=button.hidden)
        assert page.status_code == 502 and "address is not allowed" in page.text, describe(page)
    assert server.tracebacks() == []


async def test_one_new_identity_in_two_browsers_at_once_makes_one_user(
    admin: AuthPIAdmin,
    fed_server: RunningServer,  # noqa: F811
) -> None:
    fed = await federation(admin, fed_server)
    await fed.upstream.user("max@example.com", email_verified=True)
    async with Browser(fed_server.url) as one, Browser(fed_server.url) as two:
        callbacks = []
        for browser in (one, two):
            _, location = await press_button(browser, fed)
            answer = await upstream_login(browser, location, "max@example.com")
            callbacks.append(urljoin(str(answer.url), answer.headers["location"]))
        answers = await asyncio.gather(one.http.get(callbacks[0]), two.http.get(callbacks[1]))
    assert all(a.status_code in (303, 409) for a in answers), [describe(a) for a in answers]
    assert 303 in {a.status_code for a in answers}
    assert len((await fed.downstream.api.users.list()).data) == 1
    assert fed_server.tracebacks() == []
