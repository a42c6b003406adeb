"""Signing in with a code sent by email (``email_otp``) or SMS (``sms_otp``), over real HTTP with the
codes read from the mail an SMTP server received and the SMS an HTTP receiver accepted (its HMAC
checked): success, wrong, expired, reused, locked, unknown identifiers, resend cooldown, send limits
and concurrent guesses counted exactly."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from authpi.clock import now_ms
from tests.conftest import BACKENDS, skip_without_postgres
from tests.db_query import rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    form,
    heading,
    is_page,
    unverified_claims,
)
from tests.oidc.mail import Delivering, code_in, delivering_server, link_in, text_of, unique_address
from tests.oidc.test_lockout import without_form_secrets

pytestmark = pytest.mark.anyio

COOLDOWN_S = 2
WRONG = "That code is not right. Check it and try again."


@pytest.fixture(scope="module", params=BACKENDS)
def delivering(request: pytest.FixtureRequest) -> Iterator[Delivering]:
    skip_without_postgres(request.param)
    with delivering_server(request.param, {"AUTHPI_CODE_RESEND_COOLDOWN": str(COOLDOWN_S)}) as running:
        yield running


@pytest.fixture
async def admin(delivering: Delivering) -> AsyncIterator[AuthPIAdmin]:
    server = delivering.server
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as client:
        yield client


async def code_realm(admin: AuthPIAdmin, server: RunningServer, *methods: str) -> Realm:
    """An issuer whose only sign-in methods are ``methods``."""
    issuer = await admin.issuers.create({"name": f"codes-{secrets.token_hex(4)}"})
    for method in methods:
        await admin.issuer(issuer.id).auth_methods.create(
            {"name": method, "method": method, "first_factor_only": True, "settings": {}}
        )
    return Realm(admin, server.url, issuer.id)


async def code_page(browser: Browser, realm: Realm, client_id: str, username: str) -> httpx.Response:
    login = await browser.get(realm.request(client_id).url)
    assert is_page(login, "login"), describe(login)
    page = await browser.submit(login, {"username": username})
    assert page.status_code == 200 and form(page, "-code/verify"), describe(page)
    return page


async def enter(browser: Browser, page: httpx.Response, code: str) -> httpx.Response:
    return await browser.submit(page, {"code": code}, action_suffix="-code/verify")


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 1_000_000:06d}"


async def test_an_emailed_code_signs_in_once(admin: AuthPIAdmin, delivering: Delivering) -> None:
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("otp")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        auth = realm.request(client.id)
        login = await browser.get(auth.url)
        page = await browser.submit(login, {"username": email})
        mail = await delivering.mail(email)
        code = code_in(text_of(mail))
        assert code in str(mail["Subject"])
        assert code not in page.text

        refused = await enter(browser, page, wrong(code))
        assert refused.status_code == 400 and error_text(refused) == WRONG
        done = await enter(browser, refused, f"{code[:3]} {code[3:]}")
        params = callback_params(done)
        assert params["state"] == auth.state
        tokens = (await realm.exchange(client, params["code"], auth)).json()
        assert unverified_claims(tokens["id_token"])["amr"] == ["otp"]

        # The same code again, from the page it was entered on: no second sign-in.
        again = await enter(browser, page, code)
        assert again.status_code == 400 and "location" not in again.headers, describe(again)
    # Neither the code nor its plain digest is at rest.
    stored = await rows(delivering.server, "SELECT code_hash, consumed_at FROM one_time_codes")
    assert all(code not in str(row) for row in stored)


async def test_a_code_asked_for_in_german_comes_in_german(admin: AuthPIAdmin, delivering: Delivering) -> None:
    """The code page and the email follow the sign-in's ui_locales, not the browser's language."""
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("otp-de")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        browser.http.headers["Accept-Language"] = "fr"
        login = await browser.get(realm.request(client.id, ui_locales="de").url)
        page = await browser.submit(login, {"username": email})
        assert heading(page) == "Prüfen Sie Ihre E-Mails" and page.headers["content-language"] == "de"
        assert "Neuen Code senden" in page.text and "Send a new code" not in page.text
        mail = await delivering.mail(email)
        assert mail["Content-Language"] == "de" and str(mail["Subject"]).startswith("Ihr Code")
        code = code_in(text_of(mail))
        refused = await enter(browser, page, wrong(code))
        assert (
            error_text(refused)
            == "Dieser Code ist nicht richtig. Prüfen Sie ihn und versuchen Sie es erneut."
        )
        assert callback_params(await enter(browser, refused, code))


async def test_an_expired_code_is_refused(admin: AuthPIAdmin, delivering: Delivering) -> None:
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("expired")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, email)
        code = code_in(text_of(await delivering.mail(email)))
        await rows(
            delivering.server,
            "UPDATE one_time_codes SET expires_at = ? WHERE issuer_id = ?",
            now_ms() - 1,
            realm.id,
        )
        late = await enter(browser, page, code)
        assert late.status_code == 400 and error_text(late) == "That code has expired. Ask for a new one."


async def test_five_wrong_codes_lock_the_identifier(admin: AuthPIAdmin, delivering: Delivering) -> None:
    """Decision 20: five wrong codes lock the identifier for this method for 15 minutes, and a new
    code does not unlock it."""
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("locked")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, email)
        code = code_in(text_of(await delivering.mail(email)))
        for n in range(1, 5):
            answer = await enter(browser, page, wrong(code, n))
            assert error_text(answer) == WRONG
        fifth = await enter(browser, page, wrong(code, 5))
        assert error_text(fifth) == "Too many failed attempts. Try again in 15 minutes."
        right = await enter(browser, page, code)
        assert right.status_code == 400 and "Too many failed attempts" in (error_text(right) or "")
    await asyncio.sleep(COOLDOWN_S)
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, email)
        fresh = code_in(text_of(await delivering.mail(email, count=2)))
        still = await enter(browser, page, fresh)
        assert still.status_code == 400 and "Too many failed attempts" in (error_text(still) or "")


async def test_concurrent_guesses_are_counted_exactly(admin: AuthPIAdmin, delivering: Delivering) -> None:
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("burst")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, email)
        code = code_in(text_of(await delivering.mail(email)))
        answers = await asyncio.gather(*(enter(browser, page, wrong(code, n)) for n in range(1, 13)))
        assert all(a.status_code == 400 for a in answers), [describe(a) for a in answers]
        assert (await enter(browser, page, code)).status_code == 400
    [(attempts,)] = await rows(
        delivering.server, "SELECT attempts FROM one_time_codes WHERE issuer_id = ?", realm.id
    )
    assert attempts == 5  # twelve guesses at once: five compared, seven refused by the lockout first
    [(counted,)] = await rows(
        delivering.server, "SELECT attempts FROM credential_lockouts WHERE issuer_id = ?", realm.id
    )
    assert counted == 13


async def test_an_unknown_identifier_gets_the_same_page_and_no_mail(
    admin: AuthPIAdmin, delivering: Delivering
) -> None:
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    known, unknown = unique_address("known"), unique_address("nobody")
    await realm.user(known)
    async with Browser(realm.server_url) as browser:
        known_page = await code_page(browser, realm, client.id, known)
    async with Browser(realm.server_url) as browser:
        unknown_page = await code_page(browser, realm, client.id, unknown)
        guess = await enter(browser, unknown_page, "123456")
        assert error_text(guess) == WRONG

    def blank(page: httpx.Response, username: str) -> str:
        text = without_form_secrets(page).replace(username, "")
        return text.replace(form(page, "-code/verify").hidden["challenge"], "")

    assert known_page.status_code == unknown_page.status_code == 200
    assert blank(known_page, known) == blank(unknown_page, unknown)
    await delivering.mail(known)
    await asyncio.sleep(1)
    assert delivering.mails_to(unknown) == 0


async def test_a_new_code_waits_for_the_cooldown_and_replaces_the_old_one(
    admin: AuthPIAdmin, delivering: Delivering
) -> None:
    realm = await code_realm(admin, delivering.server, "email_otp")
    client = await realm.client()
    email = unique_address("resend")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, email)
        first = code_in(text_of(await delivering.mail(email)))
        held = await browser.submit(page, {}, action_suffix="/login/email-code")
        assert "You can ask for a new one in" in held.text, describe(held)
        challenge = form(page, "-code/verify").hidden["challenge"]
        assert form(held, "-code/verify").hidden["challenge"] == challenge
        await asyncio.sleep(COOLDOWN_S + 0.2)
        resent = await browser.submit(held, {}, action_suffix="/login/email-code")
        second = code_in(text_of(await delivering.mail(email, count=2)))
        assert delivering.mails_to(email) == 2
        if first != second:
            old = await enter(browser, resent, first)
            assert old.status_code == 400
        callback_params(await enter(browser, resent, second))


async def test_a_texted_code_signs_in_a_phone_user(admin: AuthPIAdmin, delivering: Delivering) -> None:
    realm = await code_realm(admin, delivering.server, "sms_otp")
    client = await realm.client()
    number = f"+1555{now_ms() % 10_000_000:07d}"
    await realm.api.users.create({"username_type": "phone", "username": number})
    async with Browser(realm.server_url) as browser:
        page = await code_page(browser, realm, client.id, number)
        assert "Check your phone" in page.text
        text = await delivering.sms(number)
        assert delivering.gateway.bad_signatures == 0
        assert "code" in callback_params(await enter(browser, page, code_in(text)))


@pytest.fixture(scope="module", params=BACKENDS)
def limited(request: pytest.FixtureRequest) -> Iterator[Delivering]:
    skip_without_postgres(request.param)
    settings = {
        "AUTHPI_RATE_LIMITS_ENABLED": "true",
        "AUTHPI_RATE_LIMIT_LOGIN": "1000/minute",
        "AUTHPI_SEND_LIMIT_PER_RECIPIENT": "2/hour",
        "AUTHPI_SEND_LIMIT_PER_IP": "5/hour",
        "AUTHPI_CODE_RESEND_COOLDOWN": "0",
    }
    with delivering_server(request.param, settings) as running:
        yield running


async def test_send_limits_stop_sms_pumping(limited: Delivering) -> None:
    server = limited.server
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        realm = await code_realm(admin, server, "sms_otp")
        client = await realm.client()
        number = f"+1666{now_ms() % 10_000_000:07d}"
        await realm.api.users.create({"username_type": "phone", "username": number})
        async with Browser(realm.server_url) as browser:
            page = await code_page(browser, realm, client.id, number)
            again = await browser.submit(page, {}, action_suffix="/login/sms-code")
            assert again.status_code == 200, describe(again)
            third = await browser.submit(again, {}, action_suffix="/login/sms-code")
            assert third.status_code == 429 and int(third.headers["Retry-After"]) > 0, describe(third)
        await limited.sms(number, count=2)
        # Numbers that belong to no account count the same, against the address's allowance.
        async with Browser(realm.server_url) as browser:
            for n in range(3):
                await code_page(browser, realm, client.id, f"+1777{n:07d}")
            login = await browser.get(realm.request(client.id).url)
            refused = await browser.submit(login, {"username": "+17770000009"})
            assert refused.status_code == 429, describe(refused)
        await asyncio.sleep(0.5)
        assert limited.texts_to(number) == 2
        found = [e async for e in admin.events.list_all(limit=100, event_types="auth.flow.rate-limited")]
        assert {(e.data or {}).get("rule") for e in found} == {"send_sms"}


# --- sign-in links ---------------------------------------------------------------------------------


def pairing_number(page: httpx.Response) -> str:
    found = re.search(r'<strong class="pairing">(\d{4})</strong>', page.text)
    assert found, page.text
    return found.group(1)


async def link_sent(browser: Browser, realm: Realm, client_id: str, username: str) -> httpx.Response:
    login = await browser.get(realm.request(client_id).url)
    page = await browser.submit(login, {"username": username})
    assert page.status_code == 200 and form(page, "/email-link/continue"), describe(page)
    return page


async def test_a_sign_in_link_works_once_in_the_browser_that_asked(
    admin: AuthPIAdmin, delivering: Delivering
) -> None:
    realm = await code_realm(admin, delivering.server, "email_link")
    client = await realm.client()
    email = unique_address("link")
    await realm.user(email)
    async with Browser(realm.server_url) as browser, Browser(realm.server_url) as scanner:
        await link_sent(browser, realm, client.id, email)
        mail = await delivering.mail(email)
        link = link_in(text_of(mail))
        assert f"/{realm.id}/email-link/" in link
        # A mail scanner (no cookies) following the link signs nobody in and spends nothing.
        scanned = await scanner.get(link)
        assert heading(scanned) == "Sign in on another browser?" and "location" not in scanned.headers
        signed_in = await browser.get(link)
        assert "code" in callback_params(signed_in)
        again = await browser.get(link)
        assert again.status_code == 400 and heading(again) == "Link already used"
    kinds = {e.type async for e in admin.events.list_all(limit=100, issuer_id=realm.id)}
    assert {"user.login-link.requested", "user.login-link.consumed", "auth.flow.device-mismatch"} <= kinds
    assert "auth.flow.replay-attempt" in kinds


async def test_a_link_opened_elsewhere_needs_the_number_the_asking_browser_shows(
    admin: AuthPIAdmin, delivering: Delivering
) -> None:
    realm = await code_realm(admin, delivering.server, "email_link")
    client = await realm.client()
    email = unique_address("cross")
    await realm.user(email)
    async with Browser(realm.server_url) as laptop, Browser(realm.server_url) as phone:
        waiting = await link_sent(laptop, realm, client.id, email)
        number = pairing_number(waiting)
        link = link_in(text_of(await delivering.mail(email)))
        early = await laptop.submit(waiting, {}, action_suffix="/email-link/continue")
        assert early.status_code == 400 and "Not confirmed yet" in (error_text(early) or "")

        # A wrong number spends the link: the asking browser cannot continue with it.
        confirm = await phone.get(link)
        wrong_number = f"{(int(number) + 1) % 10_000:04d}"
        refused = await phone.submit(confirm, {"number": wrong_number})
        assert heading(refused) == "Not confirmed", describe(refused)
        assert heading(await phone.get(link)) == "Link already used"
        spent = await laptop.submit(waiting, {}, action_suffix="/email-link/continue")
        assert spent.status_code == 400

        await asyncio.sleep(COOLDOWN_S)
        waiting = await laptop.submit(waiting, {}, action_suffix="/login/email-link")
        number = pairing_number(waiting)
        link = link_in(text_of(await delivering.mail(email, count=2)))
        confirm = await phone.get(link)
        confirmed = await phone.submit(confirm, {"number": number})
        assert heading(confirmed) == "Confirmed", describe(confirmed)
        assert phone.session_cookie is None  # the phone is not signed in
        done = await laptop.submit(waiting, {}, action_suffix="/email-link/continue")
        assert "code" in callback_params(done)
        assert heading(await phone.get(link)) == "Link already used"


async def test_an_expired_link_signs_nobody_in(admin: AuthPIAdmin, delivering: Delivering) -> None:
    realm = await code_realm(admin, delivering.server, "email_link")
    client = await realm.client()
    email = unique_address("late-link")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        await link_sent(browser, realm, client.id, email)
        link = link_in(text_of(await delivering.mail(email)))
        await rows(
            delivering.server,
            "UPDATE one_time_codes SET expires_at = ? WHERE issuer_id = ?",
            now_ms() - 1,
            realm.id,
        )
        late = await browser.get(link)
        assert late.status_code == 400 and heading(late) == "Link expired"
        assert heading(await browser.get(link[:-4] + "AAAA")) == "Link not valid"


# --- sign-up with a code ---------------------------------------------------------------------------


async def test_sign_up_with_an_emailed_code_creates_a_verified_account(
    admin: AuthPIAdmin, delivering: Delivering
) -> None:
    issuer = await admin.issuers.create(
        {
            "name": f"signup-{secrets.token_hex(4)}",
            "settings": {"access": {"allowed_email_domains": ["example.com"]}},
        }
    )
    await admin.issuer(issuer.id).auth_methods.create(
        {"name": "Code", "method": "email_otp", "first_factor_only": True, "enabled_signup": True}
    )
    realm = Realm(admin, delivering.server.url, issuer.id)
    client = await realm.client()
    email = unique_address("newcomer")
    async with Browser(realm.server_url) as browser:
        login = await browser.get(realm.request(client.id).url)
        signup = await browser.get(str(httpx.URL(str(login.url)).join(_href(login, SIGN_UP_LABEL))))
        assert heading(signup) == "Create an account", describe(signup)
        outside = await browser.submit(signup, {"username": "someone@elsewhere.org", "name": "X"})
        assert outside.status_code == 400 and "not open to this email domain" in (error_text(outside) or "")
        page = await browser.submit(signup, {"username": email, "name": "New Comer"})
        assert form(page, "/signup/email-code/verify"), describe(page)
        assert not await users_named(realm, email)  # nothing exists before the code
        code = code_in(text_of(await delivering.mail(email)))
        wrong_answer = await browser.submit(page, {"code": wrong(code)}, action_suffix="-code/verify")
        assert wrong_answer.status_code == 400
        done = await browser.submit(wrong_answer, {"code": code}, action_suffix="-code/verify")
        assert "code" in callback_params(done), describe(done)
    [user] = await users_named(realm, email)
    assert user.profile and user.profile.get("email_verified") is True
    assert user.profile.get("name") == "New Comer"

    # The same address again: after proving it, its owner learns the account exists; nothing changes.
    await asyncio.sleep(COOLDOWN_S)
    async with Browser(realm.server_url) as browser:
        login = await browser.get(realm.request(client.id).url)
        signup = await browser.get(str(httpx.URL(str(login.url)).join(_href(login, SIGN_UP_LABEL))))
        page = await browser.submit(signup, {"username": email})
        code = code_in(text_of(await delivering.mail(email, count=2)))
        taken = await browser.submit(page, {"code": code}, action_suffix="-code/verify")
        assert taken.status_code == 409 and heading(taken) == "Account exists", describe(taken)
    assert len(await users_named(realm, email)) == 1


SIGN_UP_LABEL = "Create an account with an email code"


async def users_named(realm: Realm, email: str) -> list[Any]:
    found = [await realm.api.users.get(u.user_id) for u in (await realm.api.users.list()).data]
    return [u for u in found if u.username == email]


def _href(page: httpx.Response, label: str) -> str:
    found = re.search(rf'<a href="([^"]+)">{re.escape(label)}</a>', page.text)
    assert found, page.text
    return found.group(1).replace("&amp;", "&")
