"""Credential lockout, account enumeration and the portal switches, over the hosted pages.

* The lockout counts every attempt in the database before the password is checked, so attempts sent
  at once cannot outrun it, and known and unknown identifiers (in any spelling) lock alike.
* Sign-up answers the same page whether or not the address is taken.
* ``settings.portals.login.enabled`` / ``signup.enabled`` switch the hosted pages off.
* Concurrent sign-ins of one user keep the per-user cap of live op sessions.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    form,
    forms,
    heading,
    is_page,
    new_realm,
)

pytestmark = pytest.mark.anyio

EMAIL = "user@example.com"
WRONG = "not the password at all"
LOCKED = "Too many failed attempts"
MAX_FAILURES = 5  # the issuer default (decision 20)


async def browsers(stack: AsyncExitStack, server_url: str, count: int) -> list[Browser]:
    return [await stack.enter_async_context(Browser(server_url)) for _ in range(count)]


def is_locked(page: httpx.Response) -> bool:
    return LOCKED in (error_text(page) or "")


async def set_settings(realm: Realm, settings: dict[str, Any]) -> None:
    await realm.api.update({"settings": settings})


# --- lockout under concurrency ----------------------------------------------------------------------


async def test_wrong_passwords_sent_at_once_cannot_outrun_the_lockout(
    realm: Realm, server: RunningServer
) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    async with AsyncExitStack() as stack:
        crowd = await browsers(stack, server.url, 20)
        pages = await asyncio.gather(*(b.password_page(realm.request(client.id).url, EMAIL) for b in crowd))
        answers = await asyncio.gather(
            *(b.submit(page, {"password": WRONG}) for b, page in zip(crowd, pages, strict=True))
        )
    assert all(a.status_code == 400 and "location" not in a.headers for a in answers), [
        describe(a) for a in answers if a.status_code != 400
    ]
    checked = [a for a in answers if not is_locked(a)]
    assert len(checked) <= MAX_FAILURES, [error_text(a) for a in answers]

    async with Browser(server.url) as owner:
        refused = await owner.sign_in(realm.request(client.id).url, EMAIL, PASSWORD)
        assert refused.status_code == 400 and is_locked(refused), describe(refused)
        assert owner.session_cookie is None
    assert await realm.sessions(user.id) == []


async def test_an_admin_setting_a_new_password_lifts_the_lock(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    page = await browser.password_page(realm.request(client.id).url, EMAIL)
    for _ in range(MAX_FAILURES + 1):
        page = await browser.submit(page, {"password": WRONG})
    assert is_locked(page), describe(page)
    await realm.api.users.update(user.id, {"password": "a brand new password"})
    async with Browser(realm.server_url) as fresh:
        response = await fresh.sign_in(realm.request(client.id).url, EMAIL, "a brand new password")
    assert "code" in callback_params(response)


# --- known and unknown identifiers look alike ------------------------------------------------------


def answer(page: httpx.Response) -> tuple[int, str | None, str | None, list[str]]:
    """What a visitor can tell from an answer: status, heading, error and which forms it offers."""
    return page.status_code, heading(page), error_text(page), [f.action.split("?")[0] for f in forms(page)]


async def attempt(realm: Realm, client_id: str, username: str, password: str) -> httpx.Response:
    """One sign-in attempt in a fresh browser, the username posted exactly as given."""
    async with Browser(realm.server_url) as browser:
        page = await browser.password_page(realm.request(client_id).url, username.strip())
        return await browser.submit(page, {"username": username, "password": password})


async def seven_attempts(realm: Realm, client_id: str, spellings: list[str]) -> list[tuple[Any, ...]]:
    """Five wrong passwords (the last four 2.5 s after the first), the right one at once, and the
    right one again 4.5 s after the first failure: past a fixed window opened by the first failure,
    within the lock that the fifth failure started (the issuer locks for 4 s)."""
    started = time.monotonic()
    answers = [await attempt(realm, client_id, spellings[0], WRONG)]
    await asyncio.sleep(2.5)
    for spelling in spellings[1:5]:
        answers.append(await attempt(realm, client_id, spelling, WRONG))
    answers.append(await attempt(realm, client_id, spellings[5], PASSWORD))
    await asyncio.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
    answers.append(await attempt(realm, client_id, spellings[6], PASSWORD))
    return [answer(a) for a in answers]


async def test_known_and_unknown_addresses_get_the_same_answers_and_lockout(realm: Realm) -> None:
    await set_settings(realm, {"security": {"lockout": {"max_failures": 5, "duration": 4}}})
    client = await realm.client()
    await realm.user(EMAIL)
    variants = ["{}", "  {}  ", "{upper}", "{title}", "\t{}", "{upper} ", " {title}"]

    def spellings(address: str) -> list[str]:
        local, domain = address.split("@")
        title = f"{local.title()}@{domain.upper()}"
        return [v.format(address, upper=address.upper(), title=title) for v in variants]

    known, unknown = await asyncio.gather(
        seven_attempts(realm, client.id, spellings(EMAIL)),
        seven_attempts(realm, client.id, spellings("ghost@example.com")),
    )
    assert known == unknown
    statuses = [status for status, *_ in known]
    assert statuses == [400] * 7
    errors = [error for _, _, error, _ in known]
    assert len(set(errors[:5])) == 1 and LOCKED not in str(errors[0])
    assert all(LOCKED in str(error) for error in errors[5:]), errors

    # The lock runs from the failure that reached the limit, then the right password works again.
    await asyncio.sleep(4.2)
    async with Browser(realm.server_url) as browser:
        params = callback_params(await browser.sign_in(realm.request(client.id).url, EMAIL))
    assert "code" in params


# --- session cap under concurrency --------------------------------------------------------------------


async def test_concurrent_sign_ins_keep_the_per_user_session_cap(realm: Realm, server: RunningServer) -> None:
    cap = 3
    # Attempts in flight count towards the lockout, so allow more of them than sign-ins sent at once.
    await set_settings(
        realm,
        {"access": {"sessions": {"max_per_user": cap}}, "security": {"lockout": {"max_failures": 50}}},
    )
    client = await realm.client()
    user = await realm.user(EMAIL)
    async with AsyncExitStack() as stack:
        crowd = await browsers(stack, server.url, 12)
        pages = await asyncio.gather(*(b.password_page(realm.request(client.id).url, EMAIL) for b in crowd))
        done = await asyncio.gather(
            *(b.submit(page, {"password": PASSWORD}) for b, page in zip(crowd, pages, strict=True))
        )
    assert all("code" in callback_params(response) for response in done)
    sessions = await realm.sessions(user.id)
    live = [s for s in sessions if s.type == "op" and s.status == "active"]
    assert len(live) == cap, [(s.id, s.status) for s in sessions if s.type == "op"]
    expired = [s for s in sessions if s.type == "op" and s.status == "expired"]
    assert len(expired) == len(done) - cap


async def test_one_authorization_request_gives_one_code_however_often_it_is_submitted(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    page = await browser.password_page(realm.request(client.id).url, EMAIL)
    sent = form(page, "/login/password")
    target = f"{realm.url}/login/password"
    data = {**sent.hidden, "password": PASSWORD}
    answers = await asyncio.gather(*(browser.http.post(target, data=data) for _ in range(4)))
    codes = [a for a in answers if a.status_code == 303 and "code=" in a.headers["location"]]
    assert len(codes) == 1, [describe(a) for a in answers]
    assert all(a.status_code == 400 for a in answers if a not in codes), [describe(a) for a in answers]


async def test_consents_given_at_once_are_all_recorded(realm: Realm, browser: Browser) -> None:
    client = await realm.client(require_consent=True)
    await realm.user(EMAIL)
    first = await browser.sign_in(realm.request(client.id, scope="openid email").url, EMAIL)
    assert is_page(first, "consent"), describe(first)
    # Several tabs of one browser each ask for consent, with different scopes, and are allowed at once.
    scopes = ["openid email", "openid profile", "openid phone", "openid address"]
    pages = [first] + [await browser.get(realm.request(client.id, scope=s).url) for s in scopes[1:]]
    assert all(is_page(page, "consent") for page in pages)
    allowed = await asyncio.gather(*(browser.submit(page, {"decision": "allow"}) for page in pages))
    assert all("code" in callback_params(a) for a in allowed), [describe(a) for a in allowed]
    # Every grant was kept: all of those scopes together now need no consent.
    silent = realm.request(client.id, scope="openid email profile phone address", prompt="none")
    assert "code" in callback_params(await browser.get(silent.url))


# --- sign-up gives one answer whether or not the address is taken ---------------------------------------


async def signup_page(browser: Browser, realm: Realm, client_id: str) -> httpx.Response:
    login = await browser.get(realm.request(client_id).url)
    link = re.search(r'href="([^"]*/signup\?request=[^"]+)"', login.text)
    assert link, describe(login)
    page = await browser.get(urljoin(str(login.url), html.unescape(link.group(1))))
    assert page.status_code == 200 and form(page, "/signup"), describe(page)
    return page


def without_form_secrets(page: httpx.Response) -> str:
    """The page with the per-browser CSRF token and the per-request ID blanked out."""
    text = page.text
    for found in forms(page):
        for name in ("csrf", "request"):
            if found.hidden.get(name):
                text = text.replace(found.hidden[name], "")
    return text


async def sign_up(
    realm: Realm, client_id: str, email: str, password: str, browser: Browser | None = None
) -> httpx.Response:
    async with AsyncExitStack() as stack:
        if browser is None:
            browser = await stack.enter_async_context(Browser(realm.server_url))
        page = await signup_page(browser, realm, client_id)
        return await browser.submit(page, {"email": email, "name": "Someone", "password": password})


async def test_signup_answers_the_same_whether_or_not_the_address_is_taken(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    realm = await new_realm(admin, server, signup=True)
    client = await realm.client()
    owner = await realm.user(EMAIL, display_name="Owner")
    before = await realm.api.users.get(owner.id)

    async with Browser(realm.server_url) as browser:
        taken = await sign_up(realm, client.id, "User@Example.com", "another password 123", browser)
        fresh = await sign_up(realm, client.id, "fresh@example.com", "another password 123")
        assert (taken.status_code, taken.headers.get("location")) == (fresh.status_code, None)
        # The address appears as typed, and URL-encoded in the "Forgot your password?" link.
        swapped = without_form_secrets(taken).replace("User@Example.com", "fresh@example.com")
        assert swapped.replace(quote("User@Example.com"), quote("fresh@example.com")) == (
            without_form_secrets(fresh)
        )
        assert taken.status_code == 200 and form(taken, "/login/password")
        # The existing account is untouched: same version, and only its own password signs in.
        stolen = await browser.submit(taken, {"password": "another password 123"})
        assert stolen.status_code == 400 and browser.session_cookie is None
    after = await realm.api.users.get(owner.id)
    assert after.updated_at == before.updated_at and after.profile == before.profile
    async with Browser(realm.server_url) as owner_browser:
        assert "code" in callback_params(await owner_browser.sign_in(realm.request(client.id).url, EMAIL))


async def test_signup_for_approval_answers_the_same_for_a_taken_address(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    realm = await new_realm(admin, server, signup=True)
    await set_settings(realm, {"access": {"mode": "approval"}})
    client = await realm.client()
    owner = await realm.user(EMAIL)

    taken = await sign_up(realm, client.id, " USER@example.com", "another password 123")
    fresh = await sign_up(realm, client.id, "fresh@example.com", "another password 123")
    assert taken.status_code == fresh.status_code == 200
    assert without_form_secrets(taken) == without_form_secrets(fresh)
    assert (await realm.api.users.get(owner.id)).status == "active"
    pending = (await realm.api.users.list(status="pending_approval")).data
    assert len(pending) == 1


async def test_concurrent_signups_of_one_address_create_one_account(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    realm = await new_realm(admin, server, signup=True)
    client = await realm.client()
    answers = await asyncio.gather(
        *(sign_up(realm, client.id, "twin@example.com", f"twin password {n}") for n in range(6))
    )
    assert {a.status_code for a in answers} == {200}, [describe(a) for a in answers]
    assert len({without_form_secrets(a) for a in answers}) == 1
    users = (await realm.api.users.list()).data
    assert len(users) == 1


# --- portal switches ------------------------------------------------------------------------------------


async def test_signup_portal_switched_off_hides_the_link_and_refuses_the_pages(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    realm = await new_realm(admin, server, signup=True)
    client = await realm.client()
    async with Browser(realm.server_url) as browser:
        page = await signup_page(browser, realm, client.id)
        await set_settings(realm, {"portals": {"signup": {"enabled": False}}})
        login = await browser.get(realm.request(client.id).url)
        assert is_page(login, "login") and "/signup?" not in login.text, describe(login)
        request_id = form(login).hidden["request"]
        opened = await browser.http.get(f"{realm.url}/signup?request={request_id}")
        posted = await browser.submit(page, {"email": "new@example.com", "password": PASSWORD})
    for refused in (opened, posted):
        assert refused.status_code == 403 and "location" not in refused.headers, describe(refused)
    assert (await realm.api.users.list()).data == []


async def test_login_portal_switched_off_refuses_sign_in(realm: Realm, server: RunningServer) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    async with Browser(server.url) as signed_in:
        await realm.code(signed_in, client, EMAIL)  # a session from before the switch
        async with Browser(server.url) as browser:
            page = await browser.password_page(realm.request(client.id).url, EMAIL)
            await set_settings(realm, {"portals": {"login": {"enabled": False}}})
            posted = await browser.submit(page, {"password": PASSWORD})
            assert posted.status_code == 403 and browser.session_cookie is None, describe(posted)
            assert heading(posted) == "Sign-in unavailable"

            auth = realm.request(client.id)
            denied = callback_params(await browser.get(auth.url))
            assert (denied["error"], denied["state"]) == ("access_denied", auth.state)
            silent = callback_params(await browser.get(realm.request(client.id, prompt="none").url))
            assert silent["error"] == "login_required"
        # Signing in is what is switched off: an existing session still completes a request.
        assert "code" in callback_params(await signed_in.get(realm.request(client.id).url))
