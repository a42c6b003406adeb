"""Shared pieces of the upstream sign-in tests: a server that may call itself (private networks on),
and a federation of two issuers of it, the upstream one acting as a real OpenID provider."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import (
    PASSWORD,
    AuthRequest,
    Browser,
    Client,
    Realm,
    describe,
    form,
    is_page,
    new_realm,
)

SETTINGS = {"AUTHPI_ALLOW_PRIVATE_NETWORKS": "true", "AUTHPI_KEY_CACHE_SECONDS": "1"}


@pytest.fixture(scope="module", params=BACKENDS)
def fed_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server whose outbound requests may reach 127.0.0.1 (its own issuers, the fake providers)."""
    skip_without_postgres(request.param)
    with run_server(request.param, SETTINGS) as running:
        yield running


@dataclass
class Federation:
    """``downstream`` signs its users in through ``upstream`` (another issuer of the same server)."""

    upstream: Realm
    downstream: Realm
    method_id: str
    app: Client  # the downstream issuer's client, the application the user signs in to
    upstream_client: Client  # AuthPI's registration at the upstream provider

    def callback_url(self) -> str:
        return f"{self.downstream.url}/social/{self.method_id}/callback"


async def federation(
    admin: AuthPIAdmin, server: RunningServer, *, method: str = "oidc", signup: bool = True, **settings: Any
) -> Federation:
    upstream = await new_realm(admin, server)
    downstream = await new_realm(admin, server)
    registration = await upstream.client()
    if method == "oidc":
        base: dict[str, Any] = {"issuer_url": upstream.url}
    else:  # oauth2_manual: the same provider through its plain OAuth endpoints and user info
        base = {
            "authorization_url": f"{upstream.url}/authorize",
            "token_url": f"{upstream.url}/token",
            "userinfo_url": f"{upstream.url}/userinfo",
            "scopes": ["openid", "email", "profile"],
        }
    created = await downstream.api.auth_methods.create(
        {
            "name": f"Upstream {secrets.token_hex(2)}",
            "method": method,
            "first_factor_only": True,
            "enabled_signup": signup,
            "settings": {
                **base,
                "client_id": registration.id,
                "client_secret": registration.secret,
                **settings,
            },
        }
    )
    fed = Federation(upstream, downstream, created.id, await downstream.client(), registration)
    await upstream.api.clients.update(
        registration.id, {"settings": {"openid": {"redirect_uris": [fed.callback_url()]}}}
    )
    return fed


async def press_button(browser: Browser, fed: Federation, **request: Any) -> tuple[AuthRequest, str]:
    """Open the application's sign-in and press the provider's button: where it sends the browser."""
    auth = fed.downstream.request(fed.app.id, **request)
    login = await browser.get(auth.url)
    assert is_page(login, "login"), describe(login)
    button = form(login, f"/social/{fed.method_id}/start")
    pressed = await browser.http.post(urljoin(str(login.url), button.action), data=button.hidden)
    assert pressed.status_code == 303, describe(pressed)
    return auth, pressed.headers["location"]


async def upstream_login(browser: Browser, location: str, username: str) -> httpx.Response:
    """Sign in at the upstream provider; returns its redirect to the callback (not followed)."""
    login = await browser.get(location)
    assert is_page(login, "login"), describe(login)
    page = await browser.submit(login, {"username": username})
    chosen = form(page, "/login/password")
    answer = await browser.http.post(
        urljoin(str(page.url), chosen.action), data={**chosen.hidden, "password": PASSWORD}
    )
    assert answer.status_code == 303, describe(answer)
    return answer


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


async def federated_sign_in(
    browser: Browser, fed: Federation, username: str
) -> tuple[AuthRequest, httpx.Response]:
    """The whole trip: button, upstream sign-in, callback; returns what the callback led to."""
    auth, location = await press_button(browser, fed)
    answer = await upstream_login(browser, location, username)
    return auth, await browser.get(urljoin(str(answer.url), answer.headers["location"]))


async def prove_and_link(browser: Browser, page: httpx.Response, username: str) -> httpx.Response:
    """On the ``account_linking_required`` page: follow its link to the login page and prove the
    existing account with its password; returns what the sign-in ends with."""
    match = re.search(r'<a class="button" href="([^"]+)"', page.text)
    assert page.status_code == 409 and match, describe(page)
    login = await browser.get(urljoin(str(page.url), html.unescape(match.group(1))))
    assert is_page(login, "login") and f'value="{username}"' in login.text, describe(login)
    step = await browser.submit(login, {"username": username}, action_suffix="/login")
    return await browser.submit(step, {"password": PASSWORD}, action_suffix="/login/password")
