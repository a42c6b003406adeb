"""Passkeys in a real browser: Debian's Chromium through Playwright, with a CDP virtual
authenticator (WebAuthn.addVirtualAuthenticator) standing in for the platform's. The hosted pages'
own script runs the ceremonies: sign-up with a passkey, passwordless sign-in through the
identifier field's autofill (conditional UI), then the passkey as the second factor after a
password.

WebAuthn refuses IP addresses as relying-party IDs, so this server is published as ``localhost``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import PASSWORD, Realm, describe, realm_on, unverified_claims
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS, SpaCallback, spa_callback_server

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

EMAIL = "lin@example.com"


@pytest.fixture(scope="module", params=BACKENDS)
def local_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    with run_server(request.param, host="localhost") as running:
        yield running


async def amr_of(realm: Realm, client: Any, spa: SpaCallback, auth: Any) -> list[str]:
    callback = spa.received[-1]
    assert callback["state"] == auth.state, callback
    tokens = await realm.exchange(client, callback["code"], auth)
    assert tokens.status_code == 200, describe(tokens)
    amr: list[str] = unverified_claims(tokens.json()["id_token"])["amr"]
    return amr


async def virtual_authenticator(page: Page) -> None:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


async def test_register_then_sign_in_passwordless_then_as_a_second_factor(
    local_server: RunningServer,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    async with realm_on(local_server) as realm:
        method = await realm.api.auth_methods.create(
            {
                "name": "Passkey",
                "method": "passkey",
                "first_factor_only": True,
                "settings": {},
                "enabled_signup": True,
            }
        )
        with spa_callback_server() as spa:
            client = await realm.client("spa", redirect_uris=[spa.redirect_uri])
            async with async_playwright() as playwright:
                chromium = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM),
                    args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP localhost 127.0.0.1"],
                )
                try:
                    page = await chromium.new_page()
                    page.set_default_timeout(20_000)
                    await virtual_authenticator(page)

                    # Sign-up: email and name, then the browser creates the passkey and, asked to
                    # use it once more, signs in with it.
                    auth = realm.request(client.id, redirect_uri=spa.redirect_uri)
                    await page.goto(auth.url)
                    field = page.get_by_label("Email or username")
                    assert await field.get_attribute("autocomplete") == "username webauthn"
                    await page.get_by_role("link", name="Create an account with a passkey").click()
                    await page.get_by_label("Email").fill(EMAIL)
                    await page.get_by_label("Name").fill("Lin")
                    await page.get_by_role("button", name="Continue").click()
                    await page.wait_for_url(f"{spa.redirect_uri}?**")
                    assert await amr_of(realm, client, spa, auth) == ["hwk", "user"]

                    # Passwordless: the identifier field's autofill (conditional UI) offers the
                    # passkey; the virtual authenticator picks it at once, as a user would.
                    posted: list[str] = []
                    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
                    auth = realm.request(client.id, redirect_uri=spa.redirect_uri, prompt="login")
                    await page.goto(auth.url)
                    await page.wait_for_url(f"{spa.redirect_uri}?**")
                    assert [url.split(f"/{realm.id}/", 1)[1] for url in posted] == [
                        "passkey/login/options",
                        "passkey/verify",
                    ]
                    assert await amr_of(realm, client, spa, auth) == ["hwk", "user"]

                    # The issuer turns passkeys into a second factor; the user gets a password.
                    users = await realm.api.users.list()
                    user_id = users.data[0].user_id
                    await realm.api.users.update(user_id, {"password": PASSWORD})
                    await realm.api.auth_methods.delete(method.id)  # type: ignore[attr-defined]
                    await realm.api.auth_methods.create(
                        {"name": "Passkey", "method": "passkey", "first_factor_only": False, "settings": {}}
                    )
                    auth = realm.request(client.id, redirect_uri=spa.redirect_uri, prompt="login")
                    await page.goto(auth.url)
                    assert await page.get_by_role("button", name="Sign in with a passkey").count() == 0
                    await page.get_by_label("Email or username").fill(EMAIL)
                    await page.get_by_role("button", name="Continue").click()
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.wait_for_url(f"{spa.redirect_uri}?**")
                    assert await amr_of(realm, client, spa, auth) == ["pwd", "hwk", "user", "mfa"]
                finally:
                    await chromium.close()
    assert local_server.tracebacks() == []
