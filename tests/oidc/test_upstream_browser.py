"""A real browser (Debian's Chromium through Playwright) signs in with an upstream provider's button:
the upstream provider is a second server process published under another site (``localhost``
against ``127.0.0.1``), so the trip there and back crosses sites as it does in production and the
callback relies on ``SameSite=Lax`` cookies reaching a top-level navigation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import PASSWORD, describe, fetch_jwks, new_realm, verify_id_token
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS, spa_callback_server
from tests.oidc.upstream_helpers import SETTINGS

pytestmark = [pytest.mark.anyio, pytest.mark.browser]
EMAIL = "grace@example.com"


@pytest.fixture(scope="module", params=BACKENDS)
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, RunningServer]]:
    """(downstream at 127.0.0.1, upstream at localhost): two processes, two sites."""
    skip_without_postgres(request.param)
    with run_server(request.param, SETTINGS) as down, run_server(request.param, host="localhost") as up:
        yield down, up


async def test_provider_button_signs_in_through_the_upstream_in_chromium(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    down, up = servers
    async with (
        AuthPIAdmin(api_key=down.api_key, base_url=down.url) as down_admin,
        AuthPIAdmin(api_key=up.api_key, base_url=up.url) as up_admin,
    ):
        upstream = await new_realm(up_admin, up)
        downstream = await new_realm(down_admin, down)
        await upstream.user(EMAIL, email_verified=True, name="Grace Upstream")
        registration = await upstream.client()
        method = await downstream.api.auth_methods.create(
            {
                "name": "Corp SSO",
                "method": "oidc",
                "first_factor_only": True,
                "enabled_signup": True,
                "featured": True,
                "settings": {
                    "issuer_url": upstream.url,
                    "client_id": registration.id,
                    "client_secret": registration.secret,
                },
            }
        )
        callback = f"{downstream.url}/social/{method.id}/callback"
        await upstream.api.clients.update(
            registration.id, {"settings": {"openid": {"redirect_uris": [callback]}}}
        )

        with spa_callback_server() as app:
            client = await downstream.client(redirect_uris=[app.redirect_uri])
            auth = downstream.request(client.id, redirect_uri=app.redirect_uri)
            async with async_playwright() as playwright:
                chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = await chromium.new_page()
                    page.set_default_timeout(20_000)
                    await page.goto(auth.url)
                    await page.get_by_role("button", name="Continue with Corp SSO").click()
                    await page.wait_for_url(f"{upstream.url}/login?**")  # at the upstream provider
                    await page.get_by_label("Email or username").fill(EMAIL)
                    await page.get_by_role("button", name="Continue").click()
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.wait_for_url(f"{app.redirect_uri}?**")
                    assert await page.get_by_role("heading").inner_text() == "Signed in"
                finally:
                    await chromium.close()
            [received] = app.received
            assert received["state"] == auth.state and "code" in received, received

        response = await downstream.exchange(client, received["code"], auth)
        assert response.status_code == 200, describe(response)
        tokens = response.json()
        alg = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))["alg"]
        claims = verify_id_token(
            tokens["id_token"],
            await fetch_jwks(f"{downstream.url}/jwks.json"),
            alg,
            iss=downstream.url,
            client_id=client.id,
            nonce=auth.nonce,
            access_token=tokens["access_token"],
        )
        user = await downstream.api.users.get(claims["sub"])
        assert user.username == EMAIL and claims["email"] == EMAIL and claims["amr"] == ["fed"]
    assert down.tracebacks() == [] and up.tracebacks() == []
