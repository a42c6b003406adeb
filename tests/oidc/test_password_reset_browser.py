"""Password reset in a real browser (Debian's Chromium through Playwright): from the password page's
"Forgot your password?" to the email link read from the SMTP server, a new password, and a new
sign-in that reaches the client's redirect URI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import skip_without_postgres
from tests.oidc.helpers import PASSWORD, new_realm
from tests.oidc.mail import Delivering, delivering_server, link_in, text_of, unique_address
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS, spa_callback_server

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

NEW_PASSWORD = "chromium chose this 2026"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def delivering(request: pytest.FixtureRequest) -> Iterator[Delivering]:
    skip_without_postgres(request.param)
    with delivering_server(request.param) as running:
        yield running


async def test_password_reset_from_the_email_link_to_a_new_sign_in(delivering: Delivering) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    server = delivering.server
    email = unique_address("chromium")
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        realm = await new_realm(admin, server)
        with spa_callback_server() as spa:
            client = await realm.client("spa", redirect_uris=[spa.redirect_uri])
            await realm.user(email, PASSWORD)
            auth = realm.request(client.id, redirect_uri=spa.redirect_uri)
            async with async_playwright() as playwright:
                chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = await chromium.new_page()
                    page.set_default_timeout(20_000)
                    await page.goto(auth.url)
                    await page.get_by_label("Email or username").fill(email)
                    await page.get_by_role("button", name="Continue").click()
                    await page.get_by_role("link", name="Forgot your password?").click()
                    await page.get_by_role("button", name="Send reset email").click()
                    await page.get_by_role("heading", name="Check your email").wait_for()

                    link = link_in(text_of(await delivering.mail(email)))
                    await page.goto(link)
                    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
                    await page.get_by_label("New password again", exact=True).fill(NEW_PASSWORD)
                    await page.get_by_role("button", name="Set new password").click()
                    await page.get_by_role("heading", name="Password changed").wait_for()

                    await page.get_by_role("link", name="Sign in with your new password").click()
                    await page.get_by_label("Email or username").fill(email)
                    await page.get_by_role("button", name="Continue").click()
                    await page.get_by_label("Password").fill(NEW_PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.wait_for_url(f"{spa.redirect_uri}?**")
                finally:
                    await chromium.close()
            assert len(spa.received) == 1 and spa.received[0]["state"] == auth.state
            tokens = (await realm.exchange(client, spa.received[0]["code"], auth)).json()
            assert "access_token" in tokens
    notice = await delivering.mail(email, count=2)
    assert "was changed" in str(notice["Subject"])
