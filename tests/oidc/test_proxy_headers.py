"""Behind a reverse proxy. With AUTHPI_TRUSTED_PROXIES naming the proxy, the address in its
X-Forwarded-For is the client the per-IP limits count, so two visitors behind one proxy have limits
of their own; without the setting the header is ignored (a client could otherwise pick its own
address). Password attempts are also limited per account, whichever addresses they come from."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import Browser, Realm, describe, error_text, realm_on

pytestmark = pytest.mark.anyio

PER_IP = 3
PER_ACCOUNT = 5
WRONG = "not the password at all"
LIMITED = {
    "AUTHPI_RATE_LIMITS_ENABLED": "true",
    "AUTHPI_RATE_LIMIT_LOGIN": f"{PER_IP}/minute",
    "AUTHPI_RATE_LIMIT_LOGIN_ACCOUNT": f"{PER_ACCOUNT}/minute",
}


@pytest.fixture(scope="module", params=BACKENDS)
def proxied_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server whose trusted proxies include the tests' own address (given as a network)."""
    skip_without_postgres(request.param)
    with run_server(
        request.param, {**LIMITED, "AUTHPI_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.0/8"}
    ) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def direct_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server with the default: no trusted proxy."""
    skip_without_postgres(request.param)
    with run_server(request.param, LIMITED) as running:
        yield running


@asynccontextmanager
async def realm_of(server: RunningServer) -> AsyncIterator[Realm]:
    async with realm_on(server) as realm:
        # The lockout stays out of the way: these tests are about the rate limits.
        await realm.api.update({"settings": {"security": {"lockout": {"max_failures": 100, "duration": 60}}}})
        yield realm


@pytest.fixture
async def proxied_realm(proxied_server: RunningServer) -> AsyncIterator[Realm]:
    async with realm_of(proxied_server) as realm:
        yield realm


@pytest.fixture
async def direct_realm(direct_server: RunningServer) -> AsyncIterator[Realm]:
    async with realm_of(direct_server) as realm:
        yield realm


def forwarded_address() -> str:
    """A fresh client address per visitor, so tests sharing a server never share a per-IP window."""
    return f"203.0.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


async def attempts(
    server: RunningServer, realm: Realm, client_id: str, username: str, count: int, ip: str
) -> list[int]:
    """``count`` wrong-password sign-ins by one visitor at ``ip``; the status of each."""
    statuses = []
    async with Browser(server.url) as browser:
        browser.http.headers["X-Forwarded-For"] = ip
        for _ in range(count):
            page = await browser.password_page(realm.request(client_id).url, username)
            answer = await browser.submit(page, {"password": WRONG})
            assert answer.status_code in (400, 429), describe(answer)
            statuses.append(answer.status_code)
    return statuses


def fresh_user() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


async def test_visitors_behind_a_trusted_proxy_have_their_own_login_limits(
    proxied_server: RunningServer, proxied_realm: Realm
) -> None:
    realm = proxied_realm
    client = await realm.client()
    first, second = forwarded_address(), forwarded_address()
    assert await attempts(proxied_server, realm, client.id, fresh_user(), PER_IP + 1, first) == [
        400
    ] * PER_IP + [429]
    # The first visitor's limit is spent; the second one, behind the same proxy, still has all of its own.
    assert await attempts(proxied_server, realm, client.id, fresh_user(), PER_IP, second) == [400] * PER_IP


async def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(
    direct_server: RunningServer, direct_realm: Realm
) -> None:
    realm = direct_realm
    client = await realm.client()
    first, second = forwarded_address(), forwarded_address()
    assert await attempts(direct_server, realm, client.id, fresh_user(), PER_IP, first) == [400] * PER_IP
    # Another claimed address changes nothing: the limit counts the connection's own address.
    assert await attempts(direct_server, realm, client.id, fresh_user(), 1, second) == [429]


async def test_one_account_is_limited_across_forwarded_addresses(
    proxied_server: RunningServer, proxied_realm: Realm
) -> None:
    realm = proxied_realm
    client = await realm.client()
    target = fresh_user()
    await realm.user(target)
    statuses = [
        (await attempts(proxied_server, realm, client.id, target, 1, forwarded_address()))[0]
        for _ in range(PER_ACCOUNT + 1)
    ]
    assert statuses == [400] * PER_ACCOUNT + [429]
    # The same spelled differently is the same account; another account is not affected.
    assert await attempts(
        proxied_server, realm, client.id, f"  {target.upper()} ", 1, forwarded_address()
    ) == [429]
    assert await attempts(proxied_server, realm, client.id, fresh_user(), 1, forwarded_address()) == [400]


async def test_the_account_limit_page_says_so(proxied_server: RunningServer, proxied_realm: Realm) -> None:
    realm = proxied_realm
    client = await realm.client()
    target = fresh_user()
    async with Browser(proxied_server.url) as browser:
        for _ in range(PER_ACCOUNT + 1):
            browser.http.headers["X-Forwarded-For"] = forwarded_address()
            page = await browser.password_page(realm.request(client.id).url, target)
            answer = await browser.submit(page, {"password": WRONG})
    assert answer.status_code == 429, describe(answer)
    assert int(answer.headers["retry-after"]) > 0
    assert "for this account" in (error_text(answer) or answer.text)
