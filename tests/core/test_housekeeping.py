"""Housekeeping over the real server: every expiring table is purged continuously once its rows
are past expiry (plus the retention for sessions, codes and refresh tokens), soft-deleted users,
clients and issuers go after AUTHPI_PURGE_AFTER with their sessions and consents, table sizes stay
bounded under a sign-in load, and one process at a time holds the pass's lease: a crashed holder
is replaced quickly and a restart runs a pass at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.db_query import count, rows
from tests.harness import RunningServer, free_port, run_server
from tests.oidc.helpers import PASSWORD, Browser, Realm, basic, callback_params, describe, is_page
from tests.oidc.test_password_reset import reset_sent

pytestmark = pytest.mark.anyio

INTERVAL_S = 1
RETENTION_S = 2
PURGE_AFTER_S = 3
FAST = {
    "AUTHPI_HOUSEKEEPING_INTERVAL": str(INTERVAL_S),
    "AUTHPI_EXPIRED_RETENTION": str(RETENTION_S),
    "AUTHPI_PURGE_AFTER": str(PURGE_AFTER_S),
    "AUTHPI_CODE_TTL": "2",
}
# Longest an expired row may outlive its retention: two passes, and slack for a busy machine.
SETTLE_S = 2 * INTERVAL_S + 4
# The shortest sessions and refresh tokens an issuer may configure, and a 1 s lockout window.
SHORT_LIVED = {
    "access": {"sessions": {"max_age": 60, "idle_timeout": 60}},
    "security": {"tokens": {"refresh_token_ttl": 60}, "lockout": {"duration": 1}},
}
LOAD_S = 75  # longer than a session lives (60 s), so purging has to keep up
LEASE_MARGIN_S = 10  # the lease outlives the interval by this much


@pytest.fixture(scope="module", params=BACKENDS)
def fast_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server (two workers) that runs housekeeping every second with short retention."""
    skip_without_postgres(request.param)
    with run_server(request.param, FAST, workers=2) as running:
        yield running


@pytest.fixture
def fast(fast_server: RunningServer) -> Iterator[RunningServer]:
    yield fast_server
    # A pass that fails is only logged: the log must show none.
    assert fast_server.tracebacks() == [], (fast_server.log_path or Path()).read_text()[-3000:]


def now_ms() -> int:
    return int(time.time() * 1000)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)
    return True


async def short_lived_realm(admin: AuthPIAdmin, server: RunningServer, **settings: Any) -> Realm:
    body: dict[str, Any] = {"name": f"hk-{uuid.uuid4().hex[:6]}"}
    if settings:
        body["settings"] = settings
    issuer = await admin.issuers.create(body)
    await admin.issuer(issuer.id).auth_methods.create(
        {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}}
    )
    return Realm(admin, server.url, issuer.id)


async def sign_in(realm: Realm, client: Any, username: str) -> dict[str, Any]:
    """A full sign-in in a fresh browser (op and rp sessions, a code), exchanged for tokens."""
    return await realm.tokens(client, username)


async def failed_sign_in(realm: Realm, client: Any, username: str) -> None:
    """A wrong password (for an account that need not exist): one lockout row."""
    async with Browser(realm.server_url) as browser:
        page = await browser.sign_in(realm.request(client.id).url, username, "not the password")
        assert page.status_code in (200, 400), describe(page)


async def sessions_of(server: RunningServer, user_id: str) -> int:
    return await count(server, "sessions", "user_id = ?", user_id)


# --- expired state -----------------------------------------------------------------------------


async def test_expired_rows_of_every_table_are_purged_after_the_retention(fast: RunningServer) -> None:
    async with AuthPIAdmin(api_key=fast.api_key, base_url=fast.url) as admin:
        realm = await short_lived_realm(admin, fast)
        client = await realm.client()
        names = [f"{role}@example.com" for role in ("expired", "idle", "revoked", "live")]
        users = [await realm.user(name) for name in names]
        tokens = {
            user.id: await sign_in(realm, client, name) for user, name in zip(users, names, strict=True)
        }
        await failed_sign_in(realm, client, "ghost@example.com")
        async with Browser(realm.server_url) as browser:  # a reset code and link (mail stays owed)
            await reset_sent(browser, realm, client.id, names[3])
        enrollment = await realm.api.user(users[3].id).verifiers.create({"type": "totp"})
        devices = realm.api.user(users[3].id).trusted_devices
        stale_device, live_device = [
            await devices.create({"fingerprint": secrets.token_hex(32)}) for _ in range(2)
        ]
        revoked = await realm.post("revoke", {"token": tokens[users[0].id]["access_token"]}, basic(client))
        assert revoked.status_code == 200, describe(revoked)
        key = f"hk-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(auth=fast.api_key) as http:
            created = await http.post(
                f"{fast.url}/v1/accounts/{fast.account_id}/issuers",
                json={"name": "idempotent"},
                headers={"Idempotency-Key": key},
            )
        assert created.status_code == 201, created.text

    # Move state into the past: expired long ago, idle long ago, revoked long ago.
    past = now_ms() - 60_000
    e, i, r, live_user = (u.id for u in users)
    await rows(fast, "UPDATE sessions SET expires_at = ? WHERE user_id = ?", past, e)
    await rows(fast, "UPDATE refresh_tokens SET expires_at = ? WHERE user_id = ?", past, e)
    await rows(fast, "UPDATE authorization_codes SET expires_at = ? WHERE user_id = ?", past, e)
    idle_since = past - 13 * 3600_000  # the default idle timeout is 12 hours
    await rows(fast, "UPDATE sessions SET last_activity_at = ? WHERE user_id = ?", idle_since, i)
    await rows(fast, "UPDATE sessions SET status = 'revoked', status_at = ? WHERE user_id = ?", past, r)
    # Pending requests stay an hour past their expiry (a late use is recorded as auth.flow.expired).
    flow_past = past - 3600_000
    await rows(
        fast, "UPDATE authorization_requests SET expires_at = ? WHERE issuer_id = ?", flow_past, realm.id
    )
    await rows(fast, "UPDATE revoked_tokens SET expires_at = ?", past)
    await rows(fast, "UPDATE idempotency_records SET expires_at = ? WHERE key = ?", past, key)
    await rows(fast, "UPDATE credential_lockouts SET expires_at = ? WHERE issuer_id = ?", past, realm.id)
    await rows(fast, "UPDATE verifiers SET expires_at = ? WHERE id = ?", past, enrollment.enrollment_id)
    await rows(fast, "UPDATE trusted_devices SET expires_at = ? WHERE id = ?", past, stale_device.device_id)
    # Codes and links stay an hour past their expiry too (a late one is told "expired").
    await rows(fast, "UPDATE one_time_codes SET expires_at = ? WHERE issuer_id = ?", flow_past, realm.id)

    leftovers = {
        "expired sessions": ("sessions", "user_id = ?", e),
        "idle sessions": ("sessions", "user_id = ?", i),
        "revoked sessions": ("sessions", "user_id = ?", r),
        "refresh tokens": ("refresh_tokens", "user_id = ?", e),
        "codes": ("authorization_codes", "user_id = ?", e),
        "authorization requests": ("authorization_requests", "issuer_id = ?", realm.id),
        "revoked token records": ("revoked_tokens", "1 = 1", None),
        "idempotency records": ("idempotency_records", "key = ?", key),
        "lockouts": ("credential_lockouts", "issuer_id = ?", realm.id),
        "unconfirmed TOTP enrollments": ("verifiers", "id = ?", enrollment.enrollment_id),
        "expired trusted devices": ("trusted_devices", "id = ?", stale_device.device_id),
        "expired one-time codes": ("one_time_codes", "issuer_id = ?", realm.id),
    }

    async def remaining() -> dict[str, int]:
        found = {}
        for name, (table, where, arg) in leftovers.items():
            found[name] = await count(fast, table, where, *([arg] if arg else []))
        return {name: n for name, n in found.items() if n}

    async def all_gone() -> bool:
        return not await remaining()

    assert await eventually(all_gone, RETENTION_S + SETTLE_S + 2), await remaining()
    # What has not ended stays.
    assert await sessions_of(fast, live_user) == 2
    assert await count(fast, "refresh_tokens", "user_id = ?", live_user) == 1
    assert await count(fast, "trusted_devices", "id = ?", live_device.device_id) == 1


# --- soft-deleted resources --------------------------------------------------------------------


async def test_soft_deleted_users_clients_and_issuers_are_purged_with_their_dependents(
    fast: RunningServer,
) -> None:
    async with AuthPIAdmin(api_key=fast.api_key, base_url=fast.url) as admin:
        realm = await short_lived_realm(admin, fast)
        asking = await realm.client(require_consent=True)
        doomed_client = await realm.client()
        doomed, kept = await realm.user("doomed@example.com"), await realm.user("kept@example.com")
        for name in ("doomed@example.com", "kept@example.com"):
            async with Browser(fast.url) as browser:
                auth = realm.request(asking.id)
                page = await browser.sign_in(auth.url, name, PASSWORD)
                assert is_page(page, "consent"), describe(page)
                assert "code" in callback_params(await browser.submit(page, {"decision": "allow"}))
        await sign_in(realm, doomed_client, "kept@example.com")
        other = await short_lived_realm(admin, fast)
        other_client = await other.client()
        other_user = await other.user("someone@example.com")
        await sign_in(other, other_client, "someone@example.com")

        assert await count(fast, "consents", "user_id = ?", doomed.id) == 1
        await realm.api.users.delete(doomed.id)
        await realm.api.clients.delete(doomed_client.id)
        await admin.issuers.delete(other.id)

    async def purged() -> bool:
        return (
            await count(fast, "users", "id = ?", doomed.id)
            + await sessions_of(fast, doomed.id)
            + await count(fast, "consents", "user_id = ?", doomed.id)
            + await count(fast, "clients", "id = ?", doomed_client.id)
            + await count(fast, "issuers", "id = ?", other.id)
            + await count(fast, "users", "id = ?", other_user.id)
            + await count(fast, "signing_keys", "issuer_id = ?", other.id)
        ) == 0

    assert await eventually(purged, PURGE_AFTER_S + SETTLE_S + 2), (
        "soft-deleted rows outlived AUTHPI_PURGE_AFTER"
    )
    # The rest of the issuer is untouched.
    assert await count(fast, "users", "id = ?", kept.id) == 1
    assert await count(fast, "consents", "user_id = ?", kept.id) == 1
    assert await count(fast, "clients", "id = ?", asking.id) == 1


async def test_deleted_webhooks_are_purged_with_their_deliveries(fast: RunningServer) -> None:
    def hook(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "url": "https://hooks.example.com/hk",
            "auth": {"type": "signature"},
            "events": ["issuer.created"],
            "retry": {"max_attempts": 30, "initial_delay_seconds": 3600, "max_delay_seconds": 3600},
        }

    async with AuthPIAdmin(api_key=fast.api_key, base_url=fast.url) as admin:
        doomed = await admin.webhooks.create(hook("doomed"))  # type: ignore[arg-type]
        kept = await admin.webhooks.create(hook("kept"))  # type: ignore[arg-type]
        await admin.issuers.create({"name": "announced"})
        assert await count(fast, "webhook_deliveries", "webhook_id = ?", doomed.id) == 1
        await admin.webhook(doomed.id).delete()

    async def purged() -> bool:
        return (
            await count(fast, "webhooks", "id = ?", doomed.id)
            + await count(fast, "webhook_deliveries", "webhook_id = ?", doomed.id)
        ) == 0

    assert await eventually(purged, PURGE_AFTER_S + SETTLE_S + 2), (
        "a deleted webhook outlived AUTHPI_PURGE_AFTER"
    )
    assert await count(fast, "webhooks", "id = ?", kept.id) == 1
    assert await count(fast, "webhook_deliveries", "webhook_id = ?", kept.id) == 1


# --- a sign-in load ----------------------------------------------------------------------------


async def test_table_sizes_stay_bounded_under_a_sign_in_load(fast: RunningServer) -> None:
    async with AuthPIAdmin(api_key=fast.api_key, base_url=fast.url) as admin:
        realm = await short_lived_realm(admin, fast, **SHORT_LIVED)
        client = await realm.client()
        names = [f"load-{n}@example.com" for n in range(5)]
        for name in names:
            await realm.user(name)
        started = time.monotonic()
        signed_in: list[float] = []
        samples: list[tuple[int, int, int]] = []
        while time.monotonic() - started < LOAD_S:
            tokens = await sign_in(realm, client, names[len(signed_in) % len(names)])
            refreshed = await realm.refresh(client, tokens["refresh_token"])
            assert refreshed.status_code == 200, describe(refreshed)
            await failed_sign_in(realm, client, f"ghost-{len(signed_in)}@example.com")
            signed_in.append(time.monotonic())
            if len(signed_in) % 10 == 0:
                samples.append(
                    (
                        round(time.monotonic() - started),
                        len(signed_in),
                        await count(fast, "sessions", "issuer_id = ?", realm.id),
                    )
                )

    # Every row past its expiry and retention is gone (one pass late at most) ...
    horizon = now_ms() - (RETENTION_S + SETTLE_S) * 1000
    stale = {
        "sessions": await count(fast, "sessions", "issuer_id = ? AND expires_at <= ?", realm.id, horizon),
        "refresh_tokens": await count(
            fast, "refresh_tokens", "issuer_id = ? AND expires_at <= ?", realm.id, horizon
        ),
        "authorization_codes": await count(
            fast, "authorization_codes", "issuer_id = ? AND expires_at <= ?", realm.id, horizon
        ),
        "credential_lockouts": await count(
            fast, "credential_lockouts", "issuer_id = ? AND expires_at <= ?", realm.id, horizon
        ),
    }
    assert stale == dict.fromkeys(stale, 0), stale
    # ... so the tables hold about one session lifetime of sign-ins, not all of them.
    recent = sum(1 for at in signed_in if at > time.monotonic() - (60 + RETENTION_S + SETTLE_S))
    sessions = await count(fast, "sessions", "issuer_id = ?", realm.id)
    assert sessions <= 2 * recent < 2 * len(signed_in), (sessions, recent, len(signed_in), samples)
    assert await count(fast, "refresh_tokens", "issuer_id = ?", realm.id) <= 2 * recent
    # Codes live 2 s: only the last few seconds' are left.
    code_window = 2 + RETENTION_S + SETTLE_S
    recent_codes = sum(1 for at in signed_in if at > time.monotonic() - code_window)
    assert await count(fast, "authorization_codes", "issuer_id = ?", realm.id) <= recent_codes + 2


# --- the lease ---------------------------------------------------------------------------------


@contextmanager
def another_process(server: RunningServer, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """One more `authpi serve` on the server's database (and data directory)."""
    port = free_port()
    full_env = {**server.env, **env, "AUTHPI_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    log_path = server.data_dir.parent / f"extra-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "authpi", "serve", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def lease(server: RunningServer) -> tuple[str, int, int]:
    """The housekeeping lease: holder, expiry and the end of the holder's last pass (ms)."""
    found = await rows(
        server, "SELECT holder, expires_at, last_run_at FROM leases WHERE name = 'housekeeping'"
    )
    assert found, "no process has taken the housekeeping lease"
    holder, expires_at, last_run_at = found[0]
    return str(holder), int(expires_at), int(last_run_at or 0)


def pid_of(holder: str) -> int:
    return int(holder.split(":")[-2])


async def new_holder_after(server: RunningServer, previous: str, seconds: float) -> str | None:
    """The next holder that completes a pass, if one does within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holder, _, last_run_at = await lease(server)
        if holder != previous and last_run_at:
            return holder
        await asyncio.sleep(0.2)
    return None


async def test_one_process_at_a_time_holds_the_lease_and_a_lost_holder_is_replaced(
    fast: RunningServer,
) -> None:
    with another_process(fast):  # three contenders: two workers of the server and this one
        observed: list[tuple[str, int, int]] = []
        for _ in range(30):
            observed.append(await lease(fast))
            await asyncio.sleep(0.2)
        holders = {holder for holder, _, _ in observed}
        assert len(holders) == 1, f"the lease changed hands while its holder was alive: {holders}"
        assert observed[-1][1] > observed[0][1] and observed[-1][2] > observed[0][2], "renewed at every pass"

        # A holder killed mid-work: its lease runs out and another process takes over.
        crashed = holders.pop()
        os.kill(pid_of(crashed), signal.SIGKILL)
        started = time.monotonic()
        successor = await new_holder_after(fast, crashed, INTERVAL_S + LEASE_MARGIN_S + 5)
        assert successor is not None, "nobody took the lease over after its holder crashed"
        assert time.monotonic() - started <= INTERVAL_S + LEASE_MARGIN_S + 5

        # A holder that stops hands the lease on at once.
        os.kill(pid_of(successor), signal.SIGTERM)
        started = time.monotonic()
        third = await new_holder_after(fast, successor, INTERVAL_S + 4)
        assert third is not None, "a stopped holder kept its lease"


@pytest.fixture(params=BACKENDS)
def hourly(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server whose next pass is an hour away, and whose deleted resources are due at once."""
    skip_without_postgres(request.param)
    env = {"AUTHPI_HOUSEKEEPING_INTERVAL": "3600", "AUTHPI_PURGE_AFTER": "1"}
    with run_server(request.param, env) as running:
        yield running


async def test_a_restart_runs_a_pass_at_once(hourly: RunningServer) -> None:
    async with AuthPIAdmin(api_key=hourly.api_key, base_url=hourly.url) as admin:
        issuer = await admin.issuers.create({"name": "to purge"})
        await admin.issuers.delete(issuer.id)
    await asyncio.sleep(1.5)  # past AUTHPI_PURGE_AFTER; the running server's next pass is an hour away
    assert await count(hourly, "issuers", "id = ?", issuer.id) == 1

    os.kill(hourly.pid, signal.SIGTERM)  # a deploy: the old process stops, a new one starts
    for _ in range(150):
        try:
            httpx.get(f"{hourly.url}/healthz", timeout=0.5)
        except httpx.TransportError:
            break
        await asyncio.sleep(0.1)
    with another_process(hourly):

        async def purged() -> bool:
            return await count(hourly, "issuers", "id = ?", issuer.id) == 0

        assert await eventually(purged, 10), "the restarted server skipped its housekeeping pass"
