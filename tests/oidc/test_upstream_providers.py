"""The built-in upstream providers (OAuth 2.0 presets, GitHub, Apple) against stand-ins that speak
each provider's documented shapes over real HTTP (tests/oidc/fake_providers.py), and ``oauth2_manual``
against a real provider: another issuer of the same server, through its plain OAuth endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from joserfc.jwk import ECKey

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.fake_providers import APPLE_KEY_ID, APPLE_TEAM, CLIENT_SECRET, Fakes, running_fakes
from tests.oidc.helpers import Browser, Realm, callback_params, describe, form, heading, new_realm
from tests.oidc.upstream_helpers import SETTINGS, federated_sign_in, federation, press_button
from tests.oidc.upstream_helpers import fed_server as fed_server

pytestmark = pytest.mark.anyio
PRESETS = ("google", "microsoft", "gitlab", "discord", "slack", "linkedin", "facebook", "twitch")


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, fakes: Fakes) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    env = {**SETTINGS, "AUTHPI_UPSTREAM_URL_REWRITES": json.dumps(fakes.rewrites())}
    with run_server(request.param, env) as running:
        yield running


@pytest.fixture
async def admin(server: RunningServer) -> AsyncIterator[AuthPIAdmin]:
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as client:
        yield client


async def add_method(realm: Realm, method: str, settings: dict[str, Any], **extra: Any) -> str:
    created = await realm.api.auth_methods.create(
        {
            "name": method.title(),
            "method": method,
            "first_factor_only": True,
            "enabled_signup": True,
            "settings": settings,
            **extra,
        }
    )
    return str(created.id)


async def sign_in(
    realm: Realm, browser: Browser, method_id: str, fakes: Fakes, *, form_post: bool = False
) -> httpx.Response:
    """Press the button, let the fake provider answer, and return where the callback leads."""
    client = await realm.client()
    auth = realm.request(client.id)
    login = await browser.get(auth.url)
    button = form(login, f"/social/{method_id}/start")
    pressed = await browser.http.post(urljoin(str(login.url), button.action), data=button.hidden)
    assert pressed.status_code == 303 and pressed.headers["location"].startswith(fakes.url), describe(pressed)
    answer = await browser.http.get(pressed.headers["location"])
    if form_post:  # Apple: the browser posts the provider's form to the callback
        assert answer.status_code == 200, describe(answer)
        posted = form(answer)
        converted = await browser.http.post(posted.action, data=posted.hidden)
        assert converted.status_code == 303, describe(converted)
        return await browser.get(urljoin(posted.action, converted.headers["location"]))
    assert answer.status_code == 302, (fakes.errors, describe(answer))
    page = await browser.get(answer.headers["location"])
    if page.status_code in (302, 303):
        params = callback_params(page)
        assert params.get("state") == auth.state, params
        tokens = await realm.exchange(client, params["code"], auth)
        assert tokens.status_code == 200, describe(tokens)
    return page


async def only_user(realm: Realm) -> Any:
    [listed] = (await realm.api.users.list()).data
    return await realm.api.users.get(listed.user_id)


async def test_each_preset_signs_up_then_signs_the_same_user_in(
    admin: AuthPIAdmin, server: RunningServer, fakes: Fakes
) -> None:
    seen, errors = len(fakes.requests), len(fakes.errors)
    for provider in PRESETS:
        realm = await new_realm(admin, server)
        settings: dict[str, Any] = {
            "provider": provider,
            "client_id": f"{provider}-client",
            "client_secret": CLIENT_SECRET,
            # Registered at the provider before the method exists: any callback path of the issuer.
            "redirect_uri": f"{realm.url}/social/{provider}/callback",
        }
        if provider == "microsoft":
            settings["tenant"] = "contoso.onmicrosoft.com"
        method_id = await add_method(realm, "oauth2", settings)
        email = f"someone@{provider}.example.com"
        fakes.identity = {
            "sub": f"{provider}-4711",
            "email": email,
            "email_verified": True,
            "name": "Some One",
        }
        async with Browser(server.url) as browser:
            page = await sign_in(realm, browser, method_id, fakes)
            assert page.status_code == 303, (provider, fakes.errors, describe(page))
        user = await only_user(realm)
        assert user.username == email and (user.profile or {}).get("name") == "Some One", provider
        async with Browser(server.url) as browser:
            page = await sign_in(realm, browser, method_id, fakes)
            assert page.status_code == 303, (provider, describe(page))
        assert (await only_user(realm)).id == user.id
    assert fakes.errors[errors:] == []
    [tenant_path] = {
        p["redirect_uri"]
        for name, step, p in fakes.requests[seen:]
        if name == "microsoft" and step == "authorize"
    }
    assert tenant_path.endswith("/social/microsoft/callback")


async def test_preset_emails_the_provider_does_not_vouch_for_are_refused(
    admin: AuthPIAdmin, server: RunningServer, fakes: Fakes
) -> None:
    for provider in ("discord", "microsoft", "facebook", "google"):
        realm = await new_realm(admin, server)
        settings = {
            "provider": provider,
            "client_id": "c",
            "client_secret": CLIENT_SECRET,
            "redirect_uri": f"{realm.url}/social/x/callback",
        }
        method_id = await add_method(realm, "oauth2", settings)
        fakes.identity = {
            "sub": "1",
            "email": f"u@{provider}.example.com",
            "email_verified": False,
            "name": "U N",
        }
        async with Browser(server.url) as browser:
            page = await sign_in(realm, browser, method_id, fakes)
            assert page.status_code == 403 and heading(page) == "Email address not verified", describe(page)
        assert (await realm.api.users.list()).data == []


async def test_unknown_oauth2_provider_is_refused_at_configuration(
    admin: AuthPIAdmin, server: RunningServer
) -> None:
    realm = await new_realm(admin, server)
    async with httpx.AsyncClient(timeout=30, auth=httpx.BasicAuth(*server.api_key)) as http:
        response = await http.post(
            f"{server.url}/v1/accounts/{server.account_id}/issuers/{realm.id}/auth-methods",
            json={
                "name": "MySpace",
                "method": "oauth2",
                "first_factor_only": True,
                "settings": {
                    "provider": "myspace",
                    "client_id": "c",
                    "client_secret": "s",
                    "redirect_uri": f"{realm.url}/social/x/callback",
                },
            },
        )
    assert response.status_code == 400, describe(response)
    assert "settings.provider" in response.text


async def test_github_uses_the_primary_verified_email(
    admin: AuthPIAdmin, server: RunningServer, fakes: Fakes
) -> None:
    realm = await new_realm(admin, server)
    method_id = await add_method(realm, "github", {"client_id": "gh", "client_secret": CLIENT_SECRET})
    seen = len(fakes.requests)
    fakes.identity = {
        "sub": "583231",
        "email": "octo@example.com",
        "email_verified": True,
        "name": "The Octocat",
    }
    async with Browser(server.url) as browser:
        page = await sign_in(realm, browser, method_id, fakes)
        assert page.status_code == 303, (fakes.errors, describe(page))
    user = await only_user(realm)
    assert user.username == "octo@example.com"
    paths = [step for name, step, _ in fakes.requests[seen:] if name == "github"]
    assert "/github-api/user" in paths and "/github-api/user/emails" in paths
    # A primary address GitHub has not verified signs nobody in.
    fakes.identity = {"sub": "99", "email": "unverified@example.com", "email_verified": False, "name": "N"}
    async with Browser(server.url) as browser:
        page = await sign_in(realm, browser, method_id, fakes)
        assert page.status_code == 403, describe(page)


async def test_apple_client_secret_form_post_and_first_time_name(
    admin: AuthPIAdmin, server: RunningServer, fakes: Fakes
) -> None:
    key = ECKey.generate_key("P-256", private=True)
    fakes.apple_public_key = key.as_dict(private=False)
    realm = await new_realm(admin, server)
    settings = {
        "client_id": "com.example.web",
        "team_id": APPLE_TEAM,
        "key_id": APPLE_KEY_ID,
        "private_key": key.as_pem(private=True).decode(),
    }
    method_id = await add_method(realm, "apple", settings)
    seen, errors = len(fakes.requests), len(fakes.errors)
    fakes.identity = {
        "sub": "001234.abcd",
        "email": "ann@example.com",
        "email_verified": True,
        "name": "Ann Apple",
        "first_time": True,
    }
    async with Browser(server.url) as browser:
        page = await sign_in(realm, browser, method_id, fakes, form_post=True)
        assert page.status_code == 303, (fakes.errors, describe(page))
    user = await only_user(realm)
    assert user.username == "ann@example.com"
    assert (user.profile or {}).get("given_name") == "Ann" and (user.profile or {}).get(
        "family_name"
    ) == "Apple"
    fakes.identity = {**fakes.identity, "first_time": False}  # Apple sends the name only once
    async with Browser(server.url) as browser:
        page = await sign_in(realm, browser, method_id, fakes, form_post=True)
        assert page.status_code == 303, (fakes.errors, describe(page))
    assert (await only_user(realm)).profile.get("name") == "Ann Apple"
    secrets_sent = {
        p["client_secret"] for name, step, p in fakes.requests[seen:] if name == "apple" and step == "token"
    }
    assert len(secrets_sent) == 1, "the client secret JWT is made once and reused while valid"
    # A private relay address is one Apple verified.
    fakes.identity = {
        "sub": "005678.efgh",
        "email": "xyz@privaterelay.appleid.com",
        "email_verified": False,
        "private_relay": True,
        "name": "P R",
    }
    async with Browser(server.url) as browser:
        page = await sign_in(realm, browser, method_id, fakes, form_post=True)
        assert page.status_code == 303, (fakes.errors, describe(page))
    assert len((await realm.api.users.list()).data) == 2
    assert fakes.errors[errors:] == []


async def test_oauth2_manual_against_a_real_provider(fed_server: RunningServer) -> None:
    async with AuthPIAdmin(api_key=fed_server.api_key, base_url=fed_server.url) as admin:
        fed = await federation(admin, fed_server, method="oauth2_manual")
        await fed.upstream.user("mia@example.com", email_verified=True, name="Mia Manual")
        async with Browser(fed_server.url) as browser:
            _, location = await press_button(browser, fed)
            assert location.startswith(f"{fed.upstream.url}/authorize?")
        async with Browser(fed_server.url) as browser:
            auth, page = await federated_sign_in(browser, fed, "mia@example.com")
            params = callback_params(page)
            assert params["state"] == auth.state
        user = await only_user(fed.downstream)
        assert user.username == "mia@example.com" and (user.profile or {}).get("name") == "Mia Manual"
        # A mapping that finds no subject in the user info ends on a page.
        await fed.downstream.api.auth_methods.update(
            fed.method_id, {"settings": {"claims": {"subject": "nope"}}}
        )
        async with Browser(fed_server.url) as browser:
            _, page = await federated_sign_in(browser, fed, "mia@example.com")
            assert page.status_code == 502 and "names no subject" in page.text, describe(page)


async def test_forged_apple_id_tokens_are_refused(
    admin: AuthPIAdmin, server: RunningServer, fakes: Fakes
) -> None:
    key = ECKey.generate_key("P-256", private=True)
    fakes.apple_public_key = key.as_dict(private=False)
    realm = await new_realm(admin, server)
    settings = {
        "client_id": "com.example.forged",
        "team_id": APPLE_TEAM,
        "key_id": APPLE_KEY_ID,
        "private_key": key.as_pem(private=True).decode(),
    }
    method_id = await add_method(realm, "apple", settings)
    fakes.identity = {
        "sub": "000999.forged",
        "email": "eve@example.com",
        "email_verified": True,
        "name": "E V",
    }
    reasons = {
        "other-key": "signature is not valid",
        "hs256": "signature is not valid",
        "none": "signature is not valid",
        "expired": "has expired",
        "audience": "meant for another client",
    }
    try:
        for forge, reason in reasons.items():
            fakes.forge = forge
            async with Browser(server.url) as browser:
                page = await sign_in(realm, browser, method_id, fakes, form_post=True)
                assert page.status_code == 502 and reason in page.text, (forge, describe(page))
    finally:
        fakes.forge = None
    assert (await realm.api.users.list()).data == []
    assert server.tracebacks() == []
