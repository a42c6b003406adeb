"""Authentication events: a sign-in, a refresh, a refresh token or code replayed and a machine token
each leave their catalogue event in the issuer's account, with the IdP as actor and no token,
code, cookie or password in it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.generated.models import Event

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import PASSWORD, Browser, Realm, describe, new_realm, realm_on, unverified_claims
from tests.oidc.test_lockout import sign_up

pytestmark = pytest.mark.anyio

EMAIL = "events@example.com"


async def events_of(admin: AuthPIAdmin, realm: Realm, **filters: Any) -> list[Event]:
    found = [e async for e in admin.events.list_all(limit=100, issuer_id=realm.id, **filters)]
    return list(reversed(found))  # oldest first


def assert_no_secrets(found: list[Event], *values: str) -> None:
    dumped = json.dumps([e.model_dump() for e in found])
    for value in (PASSWORD, "cookie_digest", "password_hash", *values):
        assert value not in dumped


async def test_sign_in_refresh_and_reuse(admin: AuthPIAdmin, realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(EMAIL)
    code, auth = await realm.code(browser, client, EMAIL)
    exchanged = await realm.exchange(client, code, auth)
    assert exchanged.status_code == 200, describe(exchanged)
    tokens = exchanged.json()
    sid = unverified_claims(tokens["access_token"])["sid"]

    [created] = await events_of(admin, realm, event_types="session.created")
    assert created.trigger == "user" and created.source == "idp"
    assert created.subject and created.subject["type"] == "session"
    assert created.auth and created.auth["user_id"] == user.id and created.auth["ip"]
    assert created.data and created.data["user_id"] == user.id and created.data["type"] == "op"

    refreshed = await realm.refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 200, describe(refreshed)
    [event] = await events_of(admin, realm, event_types="session.token-refreshed")
    assert event.subject == {"type": "session", "id": sid}
    assert event.auth and event.auth["client_id"] == client.id and event.auth["type"] == "client"
    assert (await admin.events.list(client_id=client.id, event_types="session.token-refreshed")).data == [
        event
    ]

    replayed = await realm.refresh(client, tokens["refresh_token"])
    assert replayed.status_code == 400
    [compromised] = await events_of(admin, realm, event_types="session.compromised")
    assert compromised.subject == {"type": "session", "id": sid} and compromised.data
    assert compromised.data["compromised_reason"] == "refresh_token_reuse"

    replay = await realm.exchange(client, code, auth)
    assert replay.status_code == 400
    [attempt] = await events_of(admin, realm, event_types="auth.flow.replay-attempt")
    assert attempt.subject == {"type": "session", "id": sid}
    assert attempt.data == {"grant_type": "authorization_code", "session_revoked": True}
    assert (await admin.events.get(attempt.id)).type == "auth.flow.replay-attempt"

    everything = await events_of(admin, realm)
    assert_no_secrets(
        everything,
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        refreshed.json()["refresh_token"],
        client.secret or "",
        *(cookie.value for cookie in browser.http.cookies.jar if cookie.value),
    )


async def test_core_session_actions(admin: AuthPIAdmin, realm: Realm, server: RunningServer) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    sid = unverified_claims((await realm.tokens(client, EMAIL))["access_token"])["sid"]
    sessions = admin.issuer(realm.id).sessions
    await sessions.suspend(sid)
    await sessions.reactivate(sid)
    await sessions.revoke(sid)
    about = [
        e for e in await events_of(admin, realm, client_id=client.id) if e.subject and e.subject["id"] == sid
    ]
    assert [e.type for e in about] == ["session.updated", "session.updated", "session.terminated"]
    assert [e.data["status"] for e in about if e.data] == ["suspended", "active", "revoked"]
    for event in about:
        assert event.trigger == "api" and event.auth and event.auth["key_id"] == server.api_key[0]


@pytest.fixture(scope="module", params=BACKENDS)
def strict_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server that allows 2 authorization requests a minute per address."""
    skip_without_postgres(request.param)
    limits = {"AUTHPI_RATE_LIMITS_ENABLED": "true", "AUTHPI_RATE_LIMIT_AUTHORIZE": "2/minute"}
    with run_server(request.param, limits) as running:
        yield running


async def test_rate_limited_flow_is_recorded_once_per_window(strict_server: RunningServer) -> None:
    async with realm_on(strict_server) as realm, httpx.AsyncClient(timeout=30) as http:
        client = await realm.client()
        answers = [(await http.get(realm.request(client.id).url)).status_code for _ in range(6)]
        assert answers.count(429) == 4, answers
        [limited] = await events_of(realm.admin, realm, event_types="auth.flow.rate-limited")
        assert limited.subject == {"type": "issuer", "id": realm.id} and limited.trigger == "user"
        assert limited.data and limited.data["rule"] == "authorize" and limited.auth and limited.auth["ip"]


async def test_hosted_sign_up_emits_user_created_once(admin: AuthPIAdmin, server: RunningServer) -> None:
    realm = await new_realm(admin, server, signup=True)
    client = await realm.client()
    secret = "a sign-up passphrase 123"
    fresh = await sign_up(realm, client.id, "new@example.com", secret)
    assert fresh.status_code == 200, describe(fresh)
    taken = await sign_up(realm, client.id, "NEW@example.com", "another passphrase 456")
    assert taken.status_code == 200, describe(taken)
    [created] = await events_of(admin, realm, event_types="user.created")
    [user] = (await realm.api.users.list()).data
    assert created.subject == {"type": "user", "id": user.user_id} and created.data
    assert created.data["username"] == "new@example.com" and created.trigger == "user"
    assert created.source == "idp" and created.auth and created.auth["ip"]
    assert_no_secrets([created], secret, "another passphrase 456")
