"""Translated hosted pages and messages, over real HTTP, SMTP and Chromium.

The language of a page: the authorization request's ``ui_locales`` (first supported tag wins, kept
for every page of that sign-in), else the browser's ``Accept-Language``, else the issuer's
``settings.portals.default_locale``, else English. A message: the locale its sender passes, else
the issuer's default, else English.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.message_outbox import Mailbox, enqueue, smtp_server
from tests.core.webhook_receiver import eventually
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    heading,
    is_page,
)
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS, spa_callback_server
from tests.oidc.test_mfa import EMAIL as MFA_EMAIL
from tests.oidc.test_mfa import enroll, second_factor_methods

pytestmark = pytest.mark.anyio

EMAIL = "ines@example.com"
ENGLISH_BROWSER = "en-US,en;q=0.9"


def lang(page: httpx.Response) -> str:
    assert page.text.startswith("<!doctype html>\n<html lang="), describe(page)
    return page.text.split('lang="', 1)[1].split('"', 1)[0]


async def set_default_locale(realm: Realm, locale: str | None) -> None:
    await realm.api.update({"settings": {"portals": {"default_locale": locale}}})


async def test_ui_locales_de_keeps_every_page_of_the_sign_in_in_german(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    browser.http.headers["Accept-Language"] = ENGLISH_BROWSER  # ui_locales wins over the browser
    # The first tag the server has wins: Portuguese has no catalogue, de-CH is served as de.
    auth = realm.request(client.id, ui_locales="pt-BR de-CH fr")

    login = await browser.get(auth.url)
    assert is_page(login, "login"), describe(login)
    assert lang(login) == "de" and login.headers["content-language"] == "de"
    assert heading(login) == f"Bei {client.name} anmelden"
    assert "E-Mail-Adresse oder Benutzername" in login.text and ">Weiter<" in login.text
    assert "Email or username" not in login.text and "Continue" not in login.text

    # The next pages carry no ui_locales: the request remembers it.
    empty = await browser.submit(login, {"username": ""})
    assert empty.status_code == 400 and lang(empty) == "de"
    assert error_text(empty) == "Geben Sie Ihre E-Mail-Adresse oder Ihren Benutzernamen ein."
    password_page = await browser.submit(empty, {"username": EMAIL})
    assert heading(password_page) == "Passwort eingeben" and "Nicht Sie?" in password_page.text
    wrong = await browser.submit(password_page, {"password": "not the password"})
    assert wrong.status_code == 400 and lang(wrong) == "de"
    assert error_text(wrong) == "Benutzername oder Passwort ist falsch."

    # Signed in: the client gets its code as ever (the language changes the pages, nothing else).
    done = await browser.submit(wrong, {"password": PASSWORD})
    assert callback_params(done)["state"] == auth.state

    # Another request of the same browser without ui_locales follows the browser again.
    again = await browser.get(realm.request(client.id, prompt="login").url)
    assert is_page(again, "login") and lang(again) == "en" and heading(again) == f"Sign in to {client.name}"


async def test_accept_language_chooses_when_the_request_does_not(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    cases = [
        ("fr-CA, en;q=0.5", "fr", f"Se connecter à {client.name}"),
        ("ja, es;q=0.8, de;q=0.9", "de", f"Bei {client.name} anmelden"),
        ("de;q=0, es", "es", f"Inicia sesión en {client.name}"),  # q=0: not acceptable
        ("ja, zh-TW", "en", f"Sign in to {client.name}"),
        ("*", "en", f"Sign in to {client.name}"),
    ]
    for header, expected, title in cases:
        browser.http.headers["Accept-Language"] = header
        page = await browser.get(realm.request(client.id).url)
        assert is_page(page, "login"), describe(page)
        assert (lang(page), heading(page)) == (expected, title), header
    # Discovery says which languages ui_locales can ask for.
    meta = (await browser.http.get(f"{realm.url}/.well-known/openid-configuration")).json()
    assert meta["ui_locales_supported"] == ["en", "de", "fr", "es"]
    # A ui_locales the server cannot serve falls back to the browser's languages.
    browser.http.headers["Accept-Language"] = "es"
    page = await browser.get(realm.request(client.id, ui_locales="ja x-klingon").url)
    assert lang(page) == "es"


async def test_the_issuer_default_language_applies_when_nobody_asks(
    realm: Realm, browser: Browser, server: RunningServer
) -> None:
    client = await realm.client()
    await set_default_locale(realm, "es")
    page = await browser.get(realm.request(client.id).url)
    assert lang(page) == "es" and heading(page) == f"Inicia sesión en {client.name}"
    # The browser's preference beats the issuer's default; ui_locales beats both.
    browser.http.headers["Accept-Language"] = "fr"
    assert lang(await browser.get(realm.request(client.id).url)) == "fr"
    assert lang(await browser.get(realm.request(client.id, ui_locales="de").url)) == "de"

    # Error pages are translated too: an expired or unknown sign-in, a bad authorization request.
    browser.http.headers.pop("Accept-Language")
    expired = await browser.get(f"{realm.url}/login?request=nonexistent")
    assert (lang(expired), heading(expired)) == ("es", "Inicio de sesión caducado")
    bad = await browser.get(realm.request("c_unknown", ui_locales="fr").url)
    assert bad.status_code == 400 and heading(bad) == "Ce lien de connexion n'est pas valide"
    assert "Application inconnue ou inactive." in bad.text

    await set_default_locale(realm, None)
    assert lang(await browser.get(realm.request(client.id).url)) == "en"


async def test_a_default_language_without_a_catalogue_is_refused(realm: Realm, server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as http:
        path = f"/v1/accounts/{server.account_id}/issuers/{realm.id}"
        refused = await http.patch(path, json={"settings": {"portals": {"default_locale": "pt"}}})
        assert refused.status_code == 422, refused.text
        assert "settings.portals.default_locale" in refused.text
        accepted = await http.patch(path, json={"settings": {"portals": {"default_locale": "fr"}}})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["data"]["settings"]["portals"]["default_locale"] == "fr"


async def test_the_logout_and_consent_pages_follow_the_language(realm: Realm, browser: Browser) -> None:
    client = await realm.client(scopes=["openid", "profile", "email", "orders:read"])
    await realm.user(EMAIL)
    auth = realm.request(client.id, ui_locales="fr", scope="openid profile orders:read", prompt="consent")
    consent = await browser.visit(auth.url, EMAIL)
    assert is_page(consent, "consent"), describe(consent)
    assert heading(consent) == f"{client.name} souhaite accéder à votre compte"
    assert "Voir votre nom et votre profil" in consent.text and "<code>profile</code>" in consent.text
    assert "orders:read" in consent.text and ">Autoriser<" in consent.text

    browser.http.headers["Accept-Language"] = "de"
    logout = await browser.get(f"{realm.url}/logout?ui_locales=es")
    assert lang(logout) == "es" and ">Cerrar sesión<" in logout.text
    signed_out = await browser.submit(logout, {})
    assert (lang(signed_out), heading(signed_out)) == ("es", "Sesión cerrada")


async def test_a_request_too_large_is_answered_in_the_browser_language(
    realm: Realm, browser: Browser
) -> None:
    """Refused before the application (and the issuer) is reached: only the browser's language."""
    url = httpx.URL(realm.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST /{realm.id}/login HTTP/1.1\r\nHost: {url.host}\r\nAccept-Language: fr-FR, en;q=0.5\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
    )
    writer.write(head.encode())  # the body is never sent: the declared length is refused at once
    await writer.drain()
    answer = (await asyncio.wait_for(reader.read(), 30)).decode()
    writer.close()
    status, _, rest = answer.partition("\r\n")
    headers, _, page = rest.partition("\r\n\r\n")
    assert status == "HTTP/1.1 413 Request Entity Too Large", answer[:300]
    assert "content-language: fr" in headers.lower()
    assert '<html lang="fr">' in page and "<h1>Requête trop volumineuse</h1>" in page


async def test_the_second_factor_pages_follow_the_flow_language(realm: Realm, browser: Browser) -> None:
    """The ui_locales of the request reaches the /mfa pages, plurals and the lockout included."""
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    page = await browser.sign_in(realm.request(client.id, ui_locales="fr").url, MFA_EMAIL)
    assert page.url.path.endswith("/mfa") and lang(page) == "fr", describe(page)
    assert heading(page) == "Saisissez le code de votre application d'authentification"
    assert "Faire confiance à cet appareil pendant 30 jours" in page.text  # the plural form
    assert "Essayer une autre méthode" in page.text
    good = enrolled.next_code()
    wrong = "999999" if good != "999999" else "888888"
    for _ in range(5):
        page = await browser.submit(page, {"code": wrong})
        assert error_text(page) == (
            "Ce code est incorrect. Saisissez le code actuel de votre application d'authentification."
        )
    locked = await browser.submit(page, {"code": good})
    assert locked.status_code == 400 and lang(locked) == "fr"
    assert error_text(locked) == "Trop de tentatives échouées. Réessayez dans 15 minutes."


# --- messages ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def mailing(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, Mailbox]]:
    skip_without_postgres(request.param)
    with smtp_server() as (mailbox, port):
        env = {
            "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
            "AUTHPI_EMAIL_FROM": "Sign-in <noreply@acme.example>",
            "AUTHPI_MESSAGE_POLL_INTERVAL": "0.2",
            "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}",
        }
        with run_server(request.param, env) as running:
            yield running, mailbox


async def test_messages_are_written_in_the_language_asked_or_the_issuer_default(
    mailing: tuple[RunningServer, Mailbox],
) -> None:
    server, mailbox = mailing
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as http:
        made = await http.post(
            f"/v1/accounts/{server.account_id}/issuers",
            json={"name": "Acme", "settings": {"access": {}, "portals": {"default_locale": "fr"}}},
        )
        assert made.status_code == 201, made.text
        issuer_id = made.json()["data"]["id"]
    stamp = time.monotonic_ns()
    asked = {
        f"de-{stamp}@example.com": "de-AT",  # served as German
        f"es-{stamp}@example.com": "es",
        f"pt-{stamp}@example.com": "pt-BR",  # no catalogue: the issuer's French
        f"none-{stamp}@example.com": None,  # nobody asked: the issuer's French
    }
    for address, locale in asked.items():
        await enqueue(
            server.env, server.account_id, [address], issuer_id=issuer_id, code="735190", locale=locale
        )

    async def arrived() -> bool:
        return all(mailbox.to(address) for address in asked)

    await eventually(arrived, timeout=30)
    expected = {
        "de": ("Ihr Code für Acme: 735190", "Er läuft in 10 Minuten ab."),
        "es": ("Tu código de Acme: 735190", "Caduca en 10 minutos."),
        "pt": ("Votre code Acme : 735190", "Il expire dans 10 minutes."),
        "none": ("Votre code Acme : 735190", "Il expire dans 10 minutes."),
    }
    languages = {"de": "de", "es": "es", "pt": "fr", "none": "fr"}
    for address in asked:
        [mail] = mailbox.to(address)
        key = address.split("-", 1)[0]
        subject, sentence = expected[key]
        assert mail["Subject"] == subject
        text, html = mail.get_body(("plain",)), mail.get_body(("html",))
        assert text is not None and html is not None
        assert sentence in text.get_content() and "735190" in text.get_content()
        assert f'<html lang="{languages[key]}">' in html.get_content()
        assert mail["Content-Language"] == languages[key]


# --- a real browser ----------------------------------------------------------------------------------


@pytest.mark.browser
async def test_chromium_shows_the_sign_in_in_german(realm: Realm, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    with spa_callback_server() as spa:
        client = await realm.client("spa", redirect_uris=[spa.redirect_uri])
        await realm.user(EMAIL)
        auth = realm.request(client.id, redirect_uri=spa.redirect_uri, ui_locales="de")
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                # The browser itself asks for English: the request's ui_locales decides.
                context = await chromium.new_context(locale="en-US")
                page = await context.new_page()
                page.set_default_timeout(20_000)
                await page.goto(auth.url)
                await page.get_by_label("E-Mail-Adresse oder Benutzername").fill(EMAIL)
                assert await page.locator("html").get_attribute("lang") == "de"
                assert await page.title() == "Anmelden · " + (await realm.api.get()).name
                await page.screenshot(path=str(tmp_path / "login-de.png"), full_page=True)
                await page.get_by_role("button", name="Weiter").click()
                await page.get_by_label("Passwort").fill("not the password")
                await page.get_by_role("button", name="Anmelden").click()
                alert = page.get_by_role("alert")
                assert await alert.inner_text() == "Benutzername oder Passwort ist falsch."
                await page.get_by_label("Passwort").fill(PASSWORD)
                await page.get_by_role("button", name="Anmelden").click()
                await page.wait_for_url(f"{spa.redirect_uri}?**")
            finally:
                await chromium.close()
        assert len(spa.received) == 1 and spa.received[0]["state"] == auth.state
