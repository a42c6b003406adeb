"""Authentication events: a sign-in, a refresh, a refresh token or code replayed and a machine token
each leave their catalogue event in the issuer's account, with the IdP as actor and no token,
code, cookie or password in it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.generated.models import Event

from authpi.clock import now_ms
from authpi.services.event_types import CATALOGUE
from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.message_outbox import Mailbox, smtp_server
from tests.db_query import count, rows
from tests.harness import RunningServer, run_server
from tests.local_dns import dns_server
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    is_page,
    new_realm,
    realm_on,
    unverified_claims,
)
from tests.oidc.mail import link_in, text_of
from tests.oidc.test_email_verification import Mailing
from tests.oidc.test_lockout import sign_up
from tests.oidc.test_password_reset import reset_sent
from tests.oidc.test_portal import open_portal
from tests.oidc.upstream_helpers import federated_sign_in, federation, prove_and_link

pytestmark = pytest.mark.anyio

EMAIL = "events@example.com"
RESET_EMAIL = "reset-walk@example.com"
BOUNCE_EMAIL = "bounce-walk@example.com"
NEW_PASSWORD = "a walked new passphrase 7"


async def mail_to(mailbox: Mailbox, address: str) -> EmailMessage:
    deadline = time.monotonic() + 30
    while not mailbox.to(address):
        assert time.monotonic() < deadline, f"no mail to {address}"
        await asyncio.sleep(0.1)
    return mailbox.to(address)[-1]


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


# --- machine tokens: the batched writer ------------------------------------------------------------


async def machine_events(admin: AuthPIAdmin, client_id: str) -> list[Event]:
    return [
        e
        async for e in admin.events.list_all(
            limit=100, client_id=client_id, event_types="machine.token.issued"
        )
    ]


async def client_credentials(realm: Realm, client: Any, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=60, limits=limits, auth=(client.id, client.secret)) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(f"{realm.url}/token", data={"grant_type": "client_credentials"})
                    for _ in range(count)
                )
            )
        )


async def test_machine_tokens_are_recorded_by_the_batched_writer(admin: AuthPIAdmin, realm: Realm) -> None:
    client = await realm.client("m2m", scopes=["reports:read", "reports:write"])
    answers = await client_credentials(realm, client, 200)
    assert [a.status_code for a in answers] == [200] * 200
    deadline = time.monotonic() + 20
    while len(found := await machine_events(admin, client.id)) < 200:
        assert time.monotonic() < deadline, f"only {len(found)} of 200 machine token events"
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.5)  # a later flush must not add any
    found = await machine_events(admin, client.id)
    assert len(found) == 200
    assert len({e.trace for e in found}) == 200  # each its own request's ID
    assert {e.trace for e in found} == {a.headers["x-request-id"] for a in answers}
    event = found[0]
    assert event.subject == {"type": "client", "id": client.id}
    assert event.trigger == "user" and event.source == "idp"
    assert event.auth and event.auth["client_id"] == client.id and event.auth["type"] == "client"
    assert event.auth["ip"] and event.auth["user_agent"].startswith("python-httpx")
    assert event.data and event.data["scopes"] == ["reports:read", "reports:write"]
    assert event.data["audience"] == [client.id] and event.data["grant_type"] == "client_credentials"
    assert event.data["expires_at"] - event.data["issued_at"] == 1800_000
    assert abs(event.timestamp - event.data["issued_at"]) <= 1
    assert_no_secrets(found, client.secret or "", *(a.json()["access_token"] for a in answers))


@pytest.fixture(params=BACKENDS)
def buffered_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server whose machine-token writer holds 30 records and would write only once an hour."""
    skip_without_postgres(request.param)
    settings = {
        "AUTHPI_EVENT_BUFFER": "30",
        "AUTHPI_EVENT_FLUSH_INTERVAL": "3600",
        "AUTHPI_METRICS_ENABLED": "true",
    }
    with run_server(request.param, settings) as running:
        yield running


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_a_full_buffer_drops_and_counts_and_shutdown_writes_out_the_rest(
    buffered_server: RunningServer,
) -> None:
    server = buffered_server
    async with realm_on(server) as realm:
        client = await realm.client("m2m", scopes=["jobs:run"])
        answers = await client_credentials(realm, client, 50)
    # The request never waits for the writer, full or not.
    assert [a.status_code for a in answers] == [200] * 50
    await asyncio.sleep(1)
    stored = "type = ? AND client_id = ?"
    assert await count(server, "events", stored, "machine.token.issued", client.id) == 0  # still queued
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(f"{server.url}/metrics")).text
    assert 'authpi_events_dropped_total{type="machine.token.issued"} 20.0' in scraped, scraped
    log = server.log_path.read_text() if server.log_path else ""
    assert "event buffer full: dropped" in log and "machine.token.issued" in log

    os.kill(server.pid, signal.SIGTERM)  # a graceful stop writes out what is queued
    deadline = time.monotonic() + 30
    while not _exited(server.pid):
        assert time.monotonic() < deadline, "the server did not stop"
        await asyncio.sleep(0.1)
    assert await count(server, "events", stored, "machine.token.issued", client.id) == 30
    assert server.tracebacks() == []


# --- the catalogue walk ----------------------------------------------------------------------------

# Every type of §C.16 whose feature exists, and the real action the walk below takes to emit it.
EMITTED = {
    "session.created": "a password sign-in on the hosted pages",
    "session.updated": "Core API suspend and reactivate of a session",
    "session.expired": "housekeeping finds a session past its max age",
    "session.terminated": "logout, Core revoke, refresh-token reuse, password change, client disabled",
    "session.compromised": "a rotated refresh token presented again",
    "session.token-refreshed": "grant_type=refresh_token",
    "machine.token.issued": "grant_type=client_credentials (batched writer)",
    "user.created": "Core API create, and sign-up on the hosted page",
    "user.updated": "Core API PATCH of the profile",
    "user.deleted": "Core API DELETE",
    "user.blocked": "Core API PATCH status suspended",
    "user.unblocked": "Core API PATCH status back to active",
    "user.password.changed": "Core API PATCH password",
    "user.device.trusted": "Core API create of a trusted device",
    "user.device.revoked": "Core API delete of a trusted device",
    "user.approval.requested": "sign-up to an issuer in approval mode",
    "user.consent.granted": "Allow on the consent page",
    "user.consent.revoked": "Remove access in the account portal",
    "user.email.change-requested": "an address change asked in the account portal",
    "user.email.changed": "the code mailed to the new address entered in the portal",
    "user.email.verified": "the same code: the new address is proven",
    "client.created": "Core API create",
    "client.updated": "Core API PATCH name",
    "client.deleted": "Core API DELETE",
    "client.secret.rotated": "Core API rotate-secret",
    "client.blocked": "Core API PATCH status disabled",
    "client.unblocked": "Core API PATCH status back to active",
    "api-key.created": "Core API create",
    "api-key.updated": "Core API PATCH",
    "api-key.deleted": "Core API DELETE",
    "api-key.blocked": "Core API block",
    "api-key.unblocked": "Core API unblock",
    "issuer.created": "Core API create",
    "issuer.updated": "Core API PATCH",
    "issuer.deleted": "Core API DELETE",
    "issuer.auth-method.created": "Core API create",
    "issuer.auth-method.updated": "Core API PATCH",
    "issuer.auth-method.deleted": "Core API DELETE",
    "account.created": "authpi accounts create",
    "account.updated": "Core API PATCH of the account",
    "auth.flow.rate-limited": "/authorize past AUTHPI_RATE_LIMIT_AUTHORIZE",
    "auth.flow.expired": "a sign-in page opened after its pending request expired",
    "auth.flow.replay-attempt": "an authorization code exchanged twice",
    "user.verifier.created": "Core API TOTP enrollment completed",
    "user.verifier.updated": "Core API PATCH of a verifier's name",
    "user.verifier.deleted": "Core API DELETE of a verifier",
    "user.mfa.factor-created": "the user's first second factor (TOTP) enrolled",
    "user.mfa.factor-deleted": "the user's TOTP deleted",
    "user.mfa.backup-codes.regenerated": "Core API regenerate",
    "user.mfa.backup-codes.low": "backup codes spent down to two",
    "user.mfa.verification.succeeded": "Core API verify with the right code",
    "user.mfa.verification.failed": "Core API verify with a wrong code",
    "webhook.created": "Core API create",
    "webhook.updated": "Core API PATCH",
    "webhook.deleted": "Core API DELETE",
    "webhook.paused": "Core API PATCH status disabled",
    "webhook.resumed": "Core API PATCH status back to active",
    "auth.flow.device-mismatch": "a pending second-factor step opened in another browser",
    "user.password.reset-requested": "a password reset asked for on the hosted page",
    "user.password.reset": "a new password set through the emailed reset link",
    "user.login-link.requested": "a sign-in link asked for on the hosted page",
    "user.login-link.consumed": "the emailed sign-in link opened in the browser that asked",
    "email.sent": "the reset, sign-in, invitation and approval emails, accepted by the SMTP server",
    "email.failed": "a reset email the SMTP server refuses until the attempt budget is spent",
    "user.approval.approved": "Core API approvals PATCH status active",
    "user.approval.rejected": "Core API approvals PATCH decision reject",
    "organization.created": "Core API create",
    "organization.updated": "Core API PATCH name",
    "organization.deleted": "Core API DELETE",
    "organization.suspended": "Core API PATCH status suspended",
    "organization.reactivated": "Core API PATCH status back to active",
    "organization.membership.created": "Core API add member, and an accepted invitation",
    "organization.membership.updated": "Core API PATCH member",
    "organization.membership.deleted": "Core API remove member",
    "organization.group.created": "Core API create group",
    "organization.group.updated": "Core API PATCH group",
    "organization.group.deleted": "Core API DELETE group",
    "organization.invitation.created": "Core API create invitation (an email to the invitee)",
    "organization.invitation.accepted": "Accept on the hosted invitation page",
    "organization.invitation.declined": "Decline on the hosted invitation page",
    "organization.invitation.deleted": "Core API revoke invitation",
    "organization.sso.domain-created": "Core API add SSO domain",
    "organization.sso.domain-verified": "Core API verify SSO domain (TXT record on the walk's DNS server)",
    "organization.sso.domain-deleted": "Core API remove SSO domain",
    "organization.sso.updated": "Core API PATCH of the sso block, and rotate-secret",
    "organization.sso.enabled": "Core API PATCH sso.enabled true",
    "organization.sso.disabled": "Core API PATCH sso.enabled false",
    "user.sso.provisioned": "a new identity of an upstream OIDC provider signs up",
    "user.sso.linked": "an upstream identity linked after the existing account signed in",
}
# Every other type, with why nothing emits it yet: the feature it reports does not exist.
_NO_AGENTS = "agents are not built"
ABSENT = {
    "user.verification.succeeded": "identity verification is not built",
    "user.verification.failed": "identity verification is not built",
    "user.personal-token.created": "personal tokens are not built",
    "user.personal-token.updated": "personal tokens are not built",
    "user.personal-token.deleted": "personal tokens are not built",
    **{
        f"agent.{name}": _NO_AGENTS
        for name in ("created", "updated", "deleted", "verifier.added", "verifier.removed")
    },
    "account.deleted": "accounts cannot be deleted",
    "account.domain.assigned": "account domains are not built",
    "account.domain.unassigned": "account domains are not built",
    "account.domain.added": "account domains are not built",
    "account.domain.removed": "account domains are not built",
    "account.credits.depleted": "never: billing is ungated (spec D.2)",
    "account.credits.updated": "never: billing is ungated (spec D.2)",
}


async def organization_walk(server: RunningServer, realm: Realm, web: Any) -> None:
    orgs = realm.api.organizations
    org = await orgs.create({"name": "Walk Inc"})
    await orgs.update(org.id, {"name": "Walk Corp"})
    await orgs.update(org.id, {"status": "suspended"})
    await orgs.update(org.id, {"status": "active"})
    scoped = realm.api.organization(org.id)
    group = await scoped.groups.create({"name": "walkers", "scopes": ["walk:read"]})
    await scoped.groups.update(group.id, {"scopes": ["walk:write"]})
    member = await realm.user("member@example.com")
    await scoped.members.create({"member_id": member.id, "scopes": ["member"], "groups": [group.id]})
    await scoped.members.update(member.id, {"user_title": "Walker"})
    await scoped.groups.delete(group.id)
    await scoped.members.delete(member.id)
    revoked = await scoped.invitations.create({"email_invited": "gone@example.com", "scopes": ["member"]})
    await scoped.invitations.revoke(revoked.id)
    invitee = await realm.user("invitee@example.com")
    await scoped.invitations.create({"email_invited": "declines@example.com", "scopes": ["member"]})
    await scoped.invitations.create({"email_invited": invitee.username, "scopes": ["member"]})
    links = {
        address: await invitation_link_to(server, address)
        for address in ("declines@example.com", invitee.username)
    }
    async with Browser(server.url) as browser:
        page = await browser.get(links["declines@example.com"])
        assert (await browser.submit(page, {"choice": "decline"})).status_code == 200
        await browser.visit(realm.request(web.id).url, invitee.username)
        page = await browser.get(links[invitee.username])
        accepted = await browser.submit(page, {"choice": "accept"})
        assert accepted.status_code == 200, describe(accepted)
    domain = await scoped.sso.add_domain({"domain": "walk.example"})
    WALK_DNS[server.url][domain.txt_record_name] = [domain.txt_record_value]
    assert (await scoped.sso.verify_domain("walk.example")).verified
    await scoped.sso.remove_domain("walk.example")
    await orgs.update(org.id, {"sso": {"issuer_url": "https://sso.walk.example", "client_id": "walk"}})
    await scoped.sso.rotate_secret()
    await orgs.update(org.id, {"sso": {"enabled": True}})
    await orgs.update(org.id, {"sso": {"enabled": False}})
    assert await count(server, "organization_memberships", "org_id = ?", org.id) == 1
    await orgs.delete(org.id)
    # Housekeeping (every second here) removes the organization with its members and invitations.
    deadline = time.monotonic() + 20
    while await count(server, "organizations", "id = ?", org.id):
        assert time.monotonic() < deadline, "the deleted organization was never purged"
        await asyncio.sleep(0.25)
    assert await count(server, "organization_memberships", "org_id = ?", org.id) == 0
    assert await count(server, "organization_invitations", "org_id = ?", org.id) == 0


# The walk server's SMTP mailbox and DNS records, by server URL.
WALK_MAIL: dict[str, Mailbox] = {}
WALK_DNS: dict[str, dict[str, list[str]]] = {}


async def invitation_link_to(server: RunningServer, address: str) -> str:
    """The link in the invitation email ``address`` received."""
    deadline = time.monotonic() + 20
    while not (received := WALK_MAIL[server.url].to(address)):
        assert time.monotonic() < deadline, f"no email to {address}"
        await asyncio.sleep(0.1)
    body = received[0].get_body(("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/invitations/[A-Za-z0-9_-]+", str(body.get_content()))
    assert found, str(body.get_content())
    return found.group(0)


def test_the_walk_accounts_for_every_catalogue_type() -> None:
    assert not set(EMITTED) & set(ABSENT)
    assert sorted({**EMITTED, **ABSENT}) == sorted(CATALOGUE) and len(CATALOGUE) == 106


@pytest.fixture(scope="module", params=BACKENDS)
def walk_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Housekeeping every second; /authorize limited to 40 a minute (the walk needs a few dozen before
    its own flood); mail to the walk's SMTP server, given up after two attempts; DNS from the walk's
    DNS server; outbound requests may reach this server (an issuer of it is another's upstream
    provider)."""
    skip_without_postgres(request.param)
    settings = {
        "AUTHPI_HOUSEKEEPING_INTERVAL": "1",
        "AUTHPI_RATE_LIMITS_ENABLED": "true",
        "AUTHPI_RATE_LIMIT_AUTHORIZE": "40/minute",
        "AUTHPI_RATE_LIMIT_LOGIN": "100/minute",
        "AUTHPI_EMAIL_FROM": "walk@example.com",
        "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
        "AUTHPI_MESSAGE_POLL_INTERVAL": "0.2",
        "AUTHPI_MESSAGE_RETRY_DELAY": "0.2",
        "AUTHPI_MESSAGE_MAX_ATTEMPTS": "2",
    }
    # One SMTP server per walk server: each backend's walk reads only the mail its own server sent
    # (the addresses are the same in both walks).
    with smtp_server() as (mailbox, port), dns_server() as (records, dns_port):
        local = {
            "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "AUTHPI_DNS_NAMESERVERS": f"127.0.0.1:{dns_port}",
        }
        with run_server(request.param, {**settings, **local}) as running:
            WALK_MAIL[running.url] = mailbox
            WALK_DNS[running.url] = records
            yield running


async def eventually_seen(admin: AuthPIAdmin, event_type: str, seconds: float = 20) -> list[Event]:
    deadline = time.monotonic() + seconds
    while not (found := [e async for e in admin.events.list_all(limit=100, event_types=event_type)]):
        assert time.monotonic() < deadline, f"no {event_type} event"
        await asyncio.sleep(0.25)
    return found


async def test_every_existing_catalogue_type_is_emitted_by_a_real_action(
    walk_server: RunningServer,
) -> None:
    server, mailbox = walk_server, WALK_MAIL[walk_server.url]
    async with realm_on(server) as realm:
        admin, api = realm.admin, realm.api
        await admin.issuers.update(realm.id, {"description": "walk"})
        [password] = (await api.auth_methods.list()).data
        await api.auth_methods.update(password.id, {"name": "Passwords"})
        github = await api.auth_methods.create(
            {
                "method": "github",
                "name": "GitHub",
                "first_factor_only": True,
                "settings": {"client_id": "c", "client_secret": "s"},
            }
        )
        await api.auth_methods.delete(github.id)

        asking = await realm.client(require_consent=True)
        web = await realm.client()
        machine = await realm.client("m2m", scopes=["jobs:run"])
        await api.clients.update(web.id, {"name": "renamed"})
        await api.clients.update(machine.id, {"status": "disabled"})
        await api.clients.update(machine.id, {"status": "active"})
        assert [a.status_code for a in await client_credentials(realm, machine, 3)] == [200] * 3
        await api.clients.rotate_secret(machine.id)
        doomed = await realm.client()
        await api.clients.delete(doomed.id)

        user = await realm.user(EMAIL)
        other = await realm.user("other@example.com")
        await api.users.update(other.id, {"status": "suspended"})
        await api.users.update(other.id, {"status": "active"})
        await api.users.update(other.id, {"profile": {"name": "Other"}})
        await api.users.delete(other.id)

        # Consent, sign-in, code, refresh, reuse, replay, logout.
        async with Browser(server.url) as browser:
            auth = realm.request(asking.id)
            page = await browser.sign_in(auth.url, EMAIL)
            assert "consent" in str(page.url), describe(page)
            code = callback_params(await browser.submit(page, {"decision": "allow"}))["code"]
            tokens = (await realm.exchange(asking, code, auth)).json()
            assert (await realm.refresh(asking, tokens["refresh_token"])).status_code == 200
            assert (await realm.refresh(asking, tokens["refresh_token"])).status_code == 400
            assert (await realm.exchange(asking, code, auth)).status_code == 400
            # The account portal withdraws that consent.
            portal = await browser.get(f"{realm.url}/account")
            consent_id = portal.text.split('data-consent="', 1)[1].split('"', 1)[0]
            withdrawn = await browser.submit(
                portal, {"consent": consent_id}, action_suffix="/account/consents/revoke"
            )
            assert withdrawn.status_code == 200, describe(withdrawn)
            code, auth = await realm.code(browser, web, EMAIL)
            web_tokens = (await realm.exchange(web, code, auth)).json()
            signed_out = await browser.get(f"{realm.url}/logout?id_token_hint={web_tokens['id_token']}")
            assert signed_out.status_code == 200, describe(signed_out)

        # Core session actions, then a password change that ends the user's sessions.
        sid = unverified_claims((await realm.tokens(web, EMAIL))["access_token"])["sid"]
        await api.sessions.suspend(sid)
        await api.sessions.reactivate(sid)
        await api.sessions.revoke(sid)
        await realm.tokens(web, EMAIL)
        device = await api.user(user.id).trusted_devices.create({"fingerprint": "ab" * 32})
        await api.user(user.id).trusted_devices.delete(device.device_id)
        await api.users.update(user.id, {"password": "a brand new passphrase 42"})

        # A session past its max age: housekeeping records it.
        late = await realm.user("late@example.com")
        await realm.tokens(web, "late@example.com")
        await rows(server, "UPDATE sessions SET expires_at = ? WHERE user_id = ?", now_ms() - 1000, late.id)
        [expired, *_] = await eventually_seen(admin, "session.expired")
        assert expired.trigger == "system" and expired.data and expired.data["reason"] == "max_age"

        # A sign-in page opened after its pending request expired.
        async with Browser(server.url) as browser:
            login = await browser.get(realm.request(web.id).url)
            assert is_page(login, "login"), describe(login)
            await rows(
                server,
                "UPDATE authorization_requests SET expires_at = ? WHERE issuer_id = ?",
                now_ms() - 1000,
                realm.id,
            )
            stale = await browser.get(str(login.url))
            assert stale.status_code == 400, describe(stale)

        # Sign-up to an issuer that approves its users.
        approving = await new_realm(admin, server, signup=True)
        await admin.issuers.update(approving.id, {"settings": {"access": {"mode": "approval"}}})
        signed_up = await sign_up(
            approving, (await approving.client()).id, "new@example.com", "a sign-up passphrase 1"
        )
        assert signed_up.status_code == 200, describe(signed_up)
        await sign_up(approving, (await approving.client()).id, "no@example.com", "a sign-up passphrase 1")
        first, second = (await approving.api.approvals.list()).data
        await approving.api.approvals.update(first.user_id, {"status": "active"})
        await approving.api.approvals.update(second.user_id, {"decision": "reject"})

        # Organizations: the org, its groups and members, invitations declined, accepted, revoked.
        await organization_walk(server, realm, web)

        # Webhooks: create, change, pause, resume, delete.
        hook = await admin.webhooks.create(
            {
                "name": "walk",
                "url": "https://hooks.example.com/walk",
                "auth": {"type": "signature"},
                "events": ["user.created"],
            }
        )
        await admin.webhook(hook.id).update({"description": "walked"})
        await admin.webhook(hook.id).update({"status": "disabled"})
        await admin.webhook(hook.id).update({"status": "active"})
        await admin.webhook(hook.id).delete()

        # A second factor through the Core API: enroll TOTP, verify, rename, spend and regenerate the
        # backup codes, delete.
        await api.auth_methods.create({"name": "Authenticator", "method": "totp", "first_factor_only": False})
        factor_user = await realm.user("factor@example.com")
        verifiers = api.user(factor_user.id).verifiers
        started = await verifiers.create({"type": "totp"})
        app = pyotp.TOTP(started.secret)
        done = await verifiers.complete_enrollment(
            {"enrollment_id": started.enrollment_id, "code": app.now()}
        )
        assert done.success and done.verifier_id and done.backup_codes, done
        wrong = "000000" if app.now() != "000000" and app.at(time.time() + 30) != "000000" else "111111"
        assert not (await verifiers.verify(done.verifier_id, {"code": wrong})).success
        assert (await verifiers.verify(done.verifier_id, {"code": app.at(time.time() + 30)})).success
        await verifiers.update(done.verifier_id, {"name": "Phone"})
        [backup] = [
            v for v in (await verifiers.list()).data if (v.model_extra or {}).get("type") == "backup_codes"
        ]
        for code in done.backup_codes[:8]:
            assert (await verifiers.verify(backup.id, {"code": code})).success
        await verifiers.regenerate(backup.id)

        # That user's pending second factor, opened in another browser than the one that proved the
        # password.
        async with Browser(server.url) as browser, Browser(server.url) as elsewhere:
            page = await browser.sign_in(realm.request(web.id).url, "factor@example.com")
            assert page.url.path.endswith("/mfa"), describe(page)
            stolen = await elsewhere.get(str(page.url))
            assert stolen.status_code == 400, describe(stolen)
        await verifiers.delete(done.verifier_id)

        # Mail: a password reset through the emailed link, a reset the SMTP server refuses, and a
        # sign-in link.
        await realm.user(RESET_EMAIL)
        await realm.user(BOUNCE_EMAIL)
        mailbox.refuse_to = {BOUNCE_EMAIL}
        async with Browser(server.url) as browser:
            await reset_sent(browser, realm, web.id, RESET_EMAIL)
        async with Browser(server.url) as browser:
            await reset_sent(browser, realm, web.id, BOUNCE_EMAIL)
        reset_link = link_in(text_of(await mail_to(mailbox, RESET_EMAIL)))
        async with Browser(server.url) as browser:
            page = await browser.get(reset_link)
            done_page = await browser.submit(page, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
            assert done_page.status_code == 200, describe(done_page)
        link_method = await api.auth_methods.create(
            {"method": "email_link", "name": "Link", "first_factor_only": True, "settings": {}}
        )
        async with Browser(server.url) as browser:
            login = await browser.get(realm.request(web.id).url)
            choose = await browser.submit(login, {"username": EMAIL})
            await browser.submit(choose, {"method": link_method.id}, action_suffix="/login/choose")
            link = link_in(text_of(await mail_to(mailbox, EMAIL)))
            assert "code" in callback_params(await browser.get(link))
        await api.auth_methods.delete(link_method.id)
        await eventually_seen(admin, "email.failed")

        # The account portal changes an address once the code mailed to the new one comes back.
        await realm.user("mover@example.com")
        async with Browser(server.url) as browser:
            portal = await open_portal(browser, realm, "mover@example.com")
            asked = await browser.submit(
                portal, {"email": "moved@example.com"}, action_suffix="/account/email"
            )
            mail = Mailing(server, mailbox)
            changed = await browser.submit(asked, {"code": await mail.code_for("moved@example.com")})
            assert "Your email address is changed." in changed.text, describe(changed)

        # Sign-in through another issuer of this server: a new identity signs up, and an existing
        # account's identity is linked once that account proved itself with its password.
        fed = await federation(admin, server)
        await fed.upstream.user("fed-new@example.com", email_verified=True)
        await fed.upstream.user("fed-old@example.com", email_verified=True)
        await fed.downstream.user("fed-old@example.com")
        async with Browser(server.url) as browser:
            _, page = await federated_sign_in(browser, fed, "fed-new@example.com")
            assert "code" in callback_params(page)
        async with Browser(server.url) as browser:
            _, page = await federated_sign_in(browser, fed, "fed-old@example.com")
            assert "code" in callback_params(await prove_and_link(browser, page, "fed-old@example.com"))

        key = await admin.api_keys.create({"name": "walk", "restrictions": {"scopes": ["events:read"]}})
        await admin.api_keys.block(key.id)
        await admin.api_keys.unblock(key.id)
        await admin.api_keys.update(key.id, {"description": "walked"})
        await admin.api_keys.delete(key.id)
        await admin.accounts.update(server.account_id, {"description": "walked"})
        created = server.cli("accounts", "create", "--name", "Walked account")
        assert created.returncode == 0, created.stderr
        new_account = json.loads(created.stdout)

        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(80):
                if (await http.get(realm.request(web.id).url)).status_code == 429:
                    break
            else:
                raise AssertionError("/authorize was never rate-limited")
        await admin.issuers.delete(approving.id)

        await eventually_seen(admin, "machine.token.issued")
        seen = {e.type async for e in admin.events.list_all(limit=100)}
        async with AuthPIAdmin(
            api_key=(new_account["key_id"], new_account["key_secret"]), base_url=server.url
        ) as theirs:
            seen |= {e.type async for e in theirs.events.list_all(limit=100)}

        missing = sorted(set(EMITTED) - seen)
        assert not missing, {name: EMITTED[name] for name in missing}
        assert not seen & set(ABSENT), seen & set(ABSENT)

        terminated = [e async for e in admin.events.list_all(limit=100, event_types="session.terminated")]
        reasons = {e.data["reason"] for e in terminated if e.data}
        assert {"logout", "admin", "refresh_token_reuse", "password_changed"} <= reasons, reasons
        assert len({e.subject["id"] for e in terminated if e.subject}) == len(terminated)  # one per session
