"""The account portal in a real browser (Debian's Chromium through Playwright): sign in to the
portal, end another sign-in (its refresh token then fails at /token), change the password."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.oidc.helpers import PASSWORD, Browser, Realm, callback_params, error_of
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

EMAIL = "chromium-portal@example.com"
NEW_PASSWORD = "chosen in the browser 7"


async def test_the_portal_in_chromium_ends_another_sign_in_and_changes_the_password(
    realm: Realm, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    await realm.user(EMAIL)
    client = await realm.client()
    elsewhere = await realm.tokens(client, EMAIL)  # a sign-in in another browser, with a refresh token

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            page.set_default_timeout(20_000)
            await page.goto(f"{realm.url}/account")
            await page.get_by_label("Email or username").fill(EMAIL)
            await page.get_by_role("button", name="Continue").click()
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(f"{realm.url}/account")
            assert await page.get_by_role("heading", level=1).inner_text() == "Your account"

            await page.get_by_role("button", name=re.compile("^End the sign-in on")).click()
            await page.get_by_text("That sign-in has ended.").wait_for()
            assert await page.get_by_role("button", name=re.compile("^End the sign-in on")).count() == 0

            await page.get_by_label("Current password").fill(PASSWORD)
            await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            await page.get_by_label("New password again").fill(NEW_PASSWORD)
            await page.get_by_role("button", name="Change password").click()
            await page.get_by_text("Your password is changed.").wait_for()
            await page.screenshot(path=str(tmp_path / "portal.png"), full_page=True)
            assert (tmp_path / "portal.png").stat().st_size > 0
        finally:
            await chromium.close()

    assert error_of(await realm.refresh(client, elsewhere["refresh_token"])) == "invalid_grant"
    async with Browser(realm.server_url) as fresh:
        assert "code" in callback_params(
            await fresh.sign_in(realm.request(client.id).url, EMAIL, NEW_PASSWORD)
        )
