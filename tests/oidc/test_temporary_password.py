"""Temporary passwords (decision 30, idp-api §C.1): an administrator sets one through the Core API;
the first sign-in with it must choose a new password before any session, code or token exists.

Real server on both backends, hosted pages driven over HTTP: the change cannot be skipped (another
request, prompt=none, the token endpoint, the second-factor page, another browser), the new
password meets the policy, the temporary password expires, two submissions at once change it once,
and the Core API refuses a password and a temporary password together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from authpi.clock import now_ms
from tests.db_query import rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    PASSWORD,
    AuthRequest,
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    error_text,
    heading,
    is_page,
)

pytestmark = pytest.mark.anyio

EMAIL = "temp@example.com"
TEMPORARY = "temporary pass 0001"
CHOSEN = "my own new passphrase"
CHANGE = "Choose a new password"


async def core(server: RunningServer, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as http:
        return await http.request(method, f"/v1/accounts/{server.account_id}{path}", json=body)


async def temporary_user(server: RunningServer, realm: Realm, **extra: Any) -> str:
    body = {"username_type": "email", "username": EMAIL, "temporary_password": TEMPORARY, **extra}
    created = await core(server, "POST", f"/issuers/{realm.id}/users", body)
    assert created.status_code == 201, describe(created)
    assert "temporary_password" not in created.text and TEMPORARY not in created.text
    user_id: str = created.json()["data"]["id"]
    return user_id


async def change_page(browser: Browser, realm: Realm, client_id: str) -> tuple[httpx.Response, AuthRequest]:
    auth = realm.request(client_id)
    page = await browser.sign_in(auth.url, EMAIL, TEMPORARY)
    assert page.status_code == 200 and heading(page) == CHANGE, describe(page)
    return page, auth


async def test_the_first_sign_in_chooses_a_new_password_before_any_session(
    server: RunningServer, realm: Realm, browser: Browser
) -> None:
    user_id = await temporary_user(server, realm)
    client = await realm.client()
    page, auth = await change_page(browser, realm, client.id)
    assert browser.session_cookie is None
    assert await realm.sessions(user_id) == []

    # The new password follows the policy, differs from the temporary one and is typed twice alike.
    for fields, problem in (
        ({"password": "short", "confirm": "short"}, "at least 8 characters"),
        ({"password": CHOSEN, "confirm": CHOSEN + "!"}, "do not match"),
        ({"password": TEMPORARY, "confirm": TEMPORARY}, "other than the temporary one"),
    ):
        refused = await browser.submit(page, fields)
        assert refused.status_code == 400 and problem in (error_text(refused) or ""), describe(refused)
        page = refused
    assert browser.session_cookie is None and await realm.sessions(user_id) == []

    done = await browser.submit(page, {"password": CHOSEN, "confirm": CHOSEN})
    tokens = await realm.exchange(client, callback_params(done)["code"], auth)
    assert tokens.status_code == 200, describe(tokens)
    assert browser.session_cookie is not None
    assert [s.status for s in await realm.sessions(user_id) if s.type == "op"] == ["active"]

    # From now on the chosen password signs in directly and the temporary one is gone.
    async with Browser(server.url) as other:
        wrong = await other.sign_in(realm.request(client.id).url, EMAIL, TEMPORARY)
        assert wrong.status_code == 400 and "Incorrect" in (error_text(wrong) or ""), describe(wrong)
    async with Browser(server.url) as other:
        direct = await other.sign_in(realm.request(client.id).url, EMAIL, CHOSEN)
        assert "code" in callback_params(direct)
    events = [e async for e in realm.admin.events.list_all(limit=100, event_types="user.password.changed")]
    assert any(e.subject and e.subject["id"] == user_id for e in events)


async def test_the_change_cannot_be_skipped(server: RunningServer, realm: Realm, browser: Browser) -> None:
    user_id = await temporary_user(server, realm)
    client = await realm.client()
    page, _ = await change_page(browser, realm, client.id)
    request_id = page.text.split('name="request" value="', 1)[1].split('"', 1)[0]

    # A new authorization request: the browser is not signed in, so the login page again.
    again = await browser.get(realm.request(client.id).url)
    assert is_page(again, "login"), describe(again)
    # prompt=none: nobody is signed in.
    silent = await browser.http.get(realm.request(client.id, prompt="none").url)
    assert callback_params(silent)["error"] == "login_required"
    # The second-factor and consent pages of the same request find no proven factor.
    for path in ("mfa", "consent"):
        other_page = await browser.get(f"{realm.url}/{path}?request={request_id}")
        assert other_page.status_code in (400, 303, 200) and heading(other_page) != CHANGE
        assert browser.session_cookie is None, path
    # No token without a code, and no grant takes a password.
    grant = await realm.token(client, grant_type="password", username=EMAIL, password=TEMPORARY)
    assert error_of(grant) == "unsupported_grant_type"
    # The change step in another browser (the request ID leaked) finds nothing to continue.
    async with Browser(server.url) as elsewhere:
        # Its own login page gives it a CSRF cookie and token; the leaked request is refused anyway.
        own = await elsewhere.get(realm.request(client.id).url)
        stolen = await elsewhere.http.post(
            f"{realm.url}/login/password/change",
            data={"request": request_id, "csrf": elsewhere_csrf(own), "password": CHOSEN, "confirm": CHOSEN},
        )
        assert stolen.status_code == 400 and heading(stolen) == "Sign-in expired", describe(stolen)
    assert await realm.sessions(user_id) == []
    # The change page answers only in the browser that typed the temporary password: it still does.
    done = await browser.submit(page, {"password": CHOSEN, "confirm": CHOSEN})
    assert "code" in callback_params(done)


def elsewhere_csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_an_expired_temporary_password_signs_nobody_in(
    server: RunningServer, realm: Realm, browser: Browser
) -> None:
    user_id = await temporary_user(server, realm, temporary_password_expires_in=3600)
    client = await realm.client()
    page, _ = await change_page(browser, realm, client.id)
    # It expires while the user is choosing: the change is refused.
    await rows(server, "UPDATE users SET password_temporary_until = ? WHERE id = ?", now_ms() - 1, user_id)
    late = await browser.submit(page, {"password": CHOSEN, "confirm": CHOSEN})
    assert late.status_code == 400 and heading(late) == "Sign-in expired", describe(late)
    # And the next sign-in with it says it expired.
    async with Browser(server.url) as other:
        expired = await other.sign_in(realm.request(client.id).url, EMAIL, TEMPORARY)
        assert expired.status_code == 400 and "expired" in (error_text(expired) or ""), describe(expired)
        assert other.session_cookie is None
    assert await realm.sessions(user_id) == []


async def test_two_submissions_at_once_change_the_password_once(
    server: RunningServer, realm: Realm, browser: Browser
) -> None:
    await temporary_user(server, realm)
    client = await realm.client()
    page, _ = await change_page(browser, realm, client.id)
    first, second = await asyncio.gather(
        browser.submit(page, {"password": CHOSEN, "confirm": CHOSEN}),
        browser.submit(page, {"password": CHOSEN + "2", "confirm": CHOSEN + "2"}),
    )
    codes = [r for r in (first, second) if r.status_code in (302, 303)]
    assert len(codes) == 1, (describe(first), describe(second))
    winner = CHOSEN if codes[0] is first else CHOSEN + "2"
    loser = CHOSEN + "2" if winner == CHOSEN else CHOSEN
    async with Browser(server.url) as other:
        assert "code" in callback_params(await other.sign_in(realm.request(client.id).url, EMAIL, winner))
    async with Browser(server.url) as other:
        refused = await other.sign_in(realm.request(client.id).url, EMAIL, loser)
        assert refused.status_code == 400, describe(refused)


async def test_the_core_api_takes_a_temporary_password_write_only(
    server: RunningServer, realm: Realm
) -> None:
    users = f"/issuers/{realm.id}/users"
    both = await core(
        server,
        "POST",
        users,
        {
            "username_type": "email",
            "username": "b@example.com",
            "password": PASSWORD,
            "temporary_password": TEMPORARY,
        },
    )
    assert both.status_code == 400, describe(both)
    lonely = await core(
        server,
        "POST",
        users,
        {"username_type": "email", "username": "b@example.com", "temporary_password_expires_in": 600},
    )
    assert lonely.status_code == 400, describe(lonely)
    weak = await core(
        server,
        "POST",
        users,
        {"username_type": "email", "username": "b@example.com", "temporary_password": "x"},
    )
    assert weak.status_code == 422 and "temporary_password" in weak.text, describe(weak)
    bounded = await core(
        server,
        "POST",
        users,
        {
            "username_type": "email",
            "username": "b@example.com",
            "temporary_password": TEMPORARY,
            "temporary_password_expires_in": 10,
        },
    )
    assert bounded.status_code in (400, 422), describe(bounded)

    # PATCH on a signed-in user: the temporary password replaces theirs and ends their sessions.
    user = await realm.user(EMAIL)
    client = await realm.client()
    await realm.tokens(client, EMAIL)
    assert [s.status for s in await realm.sessions(user.id) if s.type == "op"] == ["active"]
    patched = await core(server, "PATCH", f"{users}/{user.id}", {"temporary_password": TEMPORARY})
    assert patched.status_code == 200 and TEMPORARY not in patched.text, describe(patched)
    assert {s.status for s in await realm.sessions(user.id)} == {"revoked"}
    async with Browser(server.url) as browser:
        old = await browser.sign_in(realm.request(client.id).url, EMAIL, PASSWORD)
        assert old.status_code == 400, describe(old)
        await change_page(browser, realm, client.id)
