"""A real browser (Debian's Chromium through Playwright) signs in through an organization's SSO:
the email entered on the application's login page belongs to a domain the organization verified, so
the browser goes straight to the organization's provider (a second server process under another
site), signs in there and comes back to the application with the organization in its token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.local_dns import dns_server
from tests.oidc.helpers import PASSWORD, describe, new_realm, unverified_claims
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS, spa_callback_server
from tests.oidc.upstream_helpers import SETTINGS

pytestmark = [pytest.mark.anyio, pytest.mark.browser]
DOMAIN = "hooli.example.com"
EMAIL = f"gavin@{DOMAIN}"
Servers = tuple[RunningServer, RunningServer, dict[str, list[str]]]


@pytest.fixture(scope="module", params=BACKENDS)
def servers(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RunningServer, RunningServer, dict[str, list[str]]]]:
    """(home at 127.0.0.1 resolving through our DNS, the organization's provider at localhost)."""
    skip_without_postgres(request.param)
    with (
        dns_server() as (records, port),
        run_server(request.param, {**SETTINGS, "AUTHPI_DNS_NAMESERVERS": f"127.0.0.1:{port}"}) as home,
        run_server(request.param, host="localhost") as provider,
    ):
        yield home, provider, records


async def test_an_organizations_email_goes_to_its_provider_in_chromium(
    servers: Servers,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    home_server, provider_server, records = servers
    async with (
        AuthPIAdmin(api_key=home_server.api_key, base_url=home_server.url) as home_admin,
        AuthPIAdmin(api_key=provider_server.api_key, base_url=provider_server.url) as provider_admin,
    ):
        provider = await new_realm(provider_admin, provider_server)
        home = await new_realm(home_admin, home_server)
        await provider.user(EMAIL, email_verified=True, name="Gavin")
        registration = await provider.client()
        org = await home.api.organizations.create(
            {
                "name": "Hooli",
                "default_member_scopes": ["member"],
                "sso": {
                    "enabled": True,
                    "issuer_url": provider.url,
                    "client_id": registration.id,
                    "client_secret": registration.secret,
                },
            }
        )
        assert org.sso is not None
        await provider.api.clients.update(
            registration.id, {"settings": {"openid": {"redirect_uris": [org.sso["redirect_uri"]]}}}
        )
        added = await home.api.organization(org.id).sso.add_domain({"domain": DOMAIN})
        records[added.txt_record_name] = [added.txt_record_value]
        assert (await home.api.organization(org.id).sso.verify_domain(DOMAIN)).verified

        with spa_callback_server() as app:
            client = await home.client(redirect_uris=[app.redirect_uri])
            auth = home.request(client.id, redirect_uri=app.redirect_uri)
            async with async_playwright() as playwright:
                chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = await chromium.new_page()
                    page.set_default_timeout(20_000)
                    await page.goto(auth.url)
                    await page.get_by_label("Email or username").fill(EMAIL)
                    await page.get_by_role("button", name="Continue").click()
                    await page.wait_for_url(f"{provider.url}/login?**")  # no password page at home
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

        response = await home.exchange(client, received["code"], auth)
        assert response.status_code == 200, describe(response)
        claims = unverified_claims(response.json()["access_token"])
        assert [o["id"] for o in claims["organizations"]] == [org.id]
        member = await home.api.organization(org.id).members.list()
        assert [m.member_id for m in member.data] == [claims["sub"]]
    assert home_server.tracebacks() == [] and provider_server.tracebacks() == []
