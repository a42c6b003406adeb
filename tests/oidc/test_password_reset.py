"""Password reset over real HTTP, with the link and code read from the mail an SMTP server received:
by link (from any browser) and by code (in the browser that asked), the policy checked before
anything is spent, every session and refresh token ended, the user told; an unknown address gets the
same answer and no mail; a used, expired or superseded link does nothing; wrong codes lock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from authpi.clock import now_ms
from tests.conftest import BACKENDS, skip_without_postgres
from tests.db_query import rows
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    form,
    heading,
    is_page,
    new_realm,
)
from tests.oidc.mail import Delivering, code_in, delivering_server, link_in, text_of, unique_address
from tests.oidc.test_lockout import without_form_secrets

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a fresh passphrase 2026"


@pytest.fixture(scope="module", params=BACKENDS)
def delivering(request: pytest.FixtureRequest) -> Iterator[Delivering]:
    skip_without_postgres(request.param)
    with delivering_server(request.param, {"AUTHPI_CODE_RESEND_COOLDOWN": "0"}) as running:
        yield running


@pytest.fixture
async def realm(delivering: Delivering) -> AsyncIterator[Realm]:
    server = delivering.server
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        yield await new_realm(admin, server)


async def reset_sent(browser: Browser, realm: Realm, client_id: str, username: str) -> httpx.Response:
    """From the authorization request: identifier, password page, "Forgot your password?", send."""
    page = await browser.password_page(realm.request(client_id).url, username)
    forgot = await browser.get(str(httpx.URL(str(page.url)).join(_link(page, "Forgot your password?"))))
    assert is_page(forgot, "reset") and form(forgot, "/password/reset"), describe(forgot)
    assert f'value="{username}"' in forgot.text  # carried over from the password page
    sent = await browser.submit(forgot, {"username": username})
    assert sent.status_code == 200 and heading(sent) == "Check your email", describe(sent)
    return sent


def _link(page: httpx.Response, label: str) -> str:
    found = re.search(rf'<a href="([^"]+)">{re.escape(label)}</a>', page.text)
    assert found, page.text
    return found.group(1).replace("&amp;", "&")


async def test_a_reset_link_sets_a_new_password_and_ends_every_session(
    realm: Realm, delivering: Delivering
) -> None:
    client = await realm.client()
    email = unique_address("reset")
    user = await realm.user(email)
    tokens = await realm.tokens(client, email)
    assert len(await realm.sessions(user.id)) >= 1

    async with Browser(realm.server_url) as browser:
        await reset_sent(browser, realm, client.id, email)
    mail = await delivering.mail(email)
    assert str(mail["Subject"]).startswith("Reset your")
    link = link_in(text_of(mail))
    assert "/password/reset?token=" in link

    async with Browser(realm.server_url) as phone:  # the link works in any browser
        page = await phone.get(link)
        assert page.status_code == 200 and heading(page) == "Choose a new password", describe(page)
        weak = await phone.submit(page, {"password": "short", "confirm": "short"})
        assert weak.status_code == 400 and "at least 8 characters" in (error_text(weak) or "")
        differ = await phone.submit(page, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
        assert error_text(differ) == "The two passwords are not the same."
        done = await phone.submit(page, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert done.status_code == 200 and heading(done) == "Password changed", describe(done)
        again = await phone.submit(page, {"password": "another one 12345", "confirm": "another one 12345"})
        assert again.status_code == 400 and heading(again) == "Reset link not valid"
        assert heading(await phone.get(link)) == "Reset link not valid"

    assert (await realm.refresh(client, tokens["refresh_token"])).status_code == 400
    assert all(s.status in ("revoked", "expired") for s in await realm.sessions(user.id))
    notice = await delivering.mail(email, count=2)
    assert "was changed" in str(notice["Subject"]) and "signed out" in text_of(notice)
    async with Browser(realm.server_url) as browser:
        old = await browser.sign_in(realm.request(client.id).url, email, PASSWORD)
        assert old.status_code == 400
    async with Browser(realm.server_url) as browser:
        callback_params(await browser.sign_in(realm.request(client.id).url, email, NEW_PASSWORD))

    kinds = [e.type async for e in realm.admin.events.list_all(limit=100, issuer_id=realm.id)]
    assert "user.password.reset-requested" in kinds and "user.password.reset" in kinds
    found = [e async for e in realm.admin.events.list_all(limit=100, issuer_id=realm.id)]
    dumped = str([e.model_dump() for e in found])
    assert link.rsplit("=", 1)[1] not in dumped and NEW_PASSWORD not in dumped


async def test_a_reset_asked_for_in_french_is_french_from_the_page_to_both_emails(
    realm: Realm, delivering: Delivering
) -> None:
    """The pages follow the sign-in's ui_locales, the reset email the page that asked for it, the
    "password changed" notice the page where the new password was set (its browser's language)."""
    client = await realm.client()
    email = unique_address("reset-fr")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        browser.http.headers["Accept-Language"] = "en"  # ui_locales wins over the browser
        page = await browser.password_page(realm.request(client.id, ui_locales="fr").url, email)
        forgot = await browser.get(str(httpx.URL(str(page.url)).join(_link(page, "Mot de passe oublié ?"))))
        assert heading(forgot) == "Réinitialisez votre mot de passe", describe(forgot)
        sent = await browser.submit(forgot, {"username": email})
        assert sent.status_code == 200 and heading(sent) == "Consultez vos e-mails", describe(sent)
        assert sent.headers["content-language"] == "fr"
    mail = await delivering.mail(email)
    assert mail["Content-Language"] == "fr" and str(mail["Subject"]).startswith(
        "Réinitialisez votre mot de passe"
    )
    body = text_of(mail)
    assert "Quelqu'un a demandé la réinitialisation" in body and "Someone asked" not in body

    async with Browser(realm.server_url) as phone:  # another browser, in Spanish
        phone.http.headers["Accept-Language"] = "es"
        page = await phone.get(link_in(body))
        assert heading(page) == "Elige una contraseña nueva", describe(page)
        mismatch = await phone.submit(page, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
        assert mismatch.status_code == 400 and error_text(mismatch) == "Las dos contraseñas no son iguales."
        done = await phone.submit(mismatch, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert done.status_code == 200 and heading(done) == "Contraseña cambiada", describe(done)
    notice = await delivering.mail(email, count=2)
    assert notice["Content-Language"] == "es" and "ha cambiado" in str(notice["Subject"])


async def test_the_code_resets_in_the_browser_that_asked(realm: Realm, delivering: Delivering) -> None:
    client = await realm.client()
    email = unique_address("code")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        sent = await reset_sent(browser, realm, client.id, email)
        code = code_in(text_of(await delivering.mail(email)))
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        fields = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        refused = await browser.submit(sent, {"code": wrong, **fields}, action_suffix="/reset/code")
        assert refused.status_code == 400 and "not right" in (error_text(refused) or "")
        async with Browser(realm.server_url) as elsewhere:  # the code form is bound to this browser
            stolen = await elsewhere.http.post(
                str(httpx.URL(str(sent.url)).join(form(sent, "/reset/code").action)),
                data={**form(sent, "/reset/code").hidden, "code": code, **fields},
            )
            assert stolen.status_code == 403, describe(stolen)
        done = await browser.submit(refused, {"code": code, **fields}, action_suffix="/reset/code")
        assert heading(done) == "Password changed", describe(done)
        again = _link(done, "Sign in with your new password")
        login = await browser.get(str(httpx.URL(str(done.url)).join(again)))
        assert is_page(login, "login"), describe(login)
        password = await browser.submit(login, {"username": email})
        callback_params(await browser.submit(password, {"password": NEW_PASSWORD}))


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    realm: Realm, delivering: Delivering
) -> None:
    client = await realm.client()
    known, unknown = unique_address("known"), unique_address("unknown")
    await realm.user(known)
    async with Browser(realm.server_url) as browser:
        known_page = await reset_sent(browser, realm, client.id, known)
    async with Browser(realm.server_url) as browser:
        unknown_page = await reset_sent(browser, realm, client.id, unknown)

    def blank(page: httpx.Response, username: str) -> str:
        text = without_form_secrets(page).replace(username, "")
        return text.replace(form(page, "/reset/code").hidden["challenge"], "")

    assert blank(known_page, known) == blank(unknown_page, unknown)
    await delivering.mail(known)
    await asyncio.sleep(1)
    assert delivering.mails_to(unknown) == 0
    requested = realm.admin.events.list_all(limit=100, event_types="user.password.reset-requested")
    assert not [e for e in [e async for e in requested] if unknown in str(e.data)]


async def test_an_expired_or_superseded_link_does_nothing(realm: Realm, delivering: Delivering) -> None:
    client = await realm.client()
    email = unique_address("stale")
    await realm.user(email)
    async with Browser(realm.server_url) as browser:
        sent = await reset_sent(browser, realm, client.id, email)
        first = link_in(text_of(await delivering.mail(email)))
        await browser.submit(sent, {}, action_suffix="/password/reset")
        second = link_in(text_of(await delivering.mail(email, count=2)))
    async with Browser(realm.server_url) as browser:
        assert heading(await browser.get(first)) == "Reset link not valid"  # a newer one was sent
        page = await browser.get(second)
        assert heading(page) == "Choose a new password"
        await rows(
            delivering.server,
            "UPDATE one_time_codes SET expires_at = ? WHERE issuer_id = ?",
            now_ms() - 1,
            realm.id,
        )
        late = await browser.submit(page, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert late.status_code == 400 and heading(late) == "Reset link not valid"
    async with Browser(realm.server_url) as browser:
        callback_params(await browser.sign_in(realm.request(client.id).url, email, PASSWORD))  # unchanged
