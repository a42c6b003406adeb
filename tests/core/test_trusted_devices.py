"""A user's trusted devices through the official ``authpi-admin`` 1.4.0 SDK (core-api §B.2 rows
105-108, §C.7): pre-register (create), list, revoke one (If-Match), revoke all (If-Match against the
user, Idempotency-Key), and the conventions every resource keeps (replay, isolation between
accounts, scopes, bounded bodies, events without the fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from authpi_admin.generated.models import Issuer, User
from authpi_admin.generated.resources.trusted_devices import TrustedDevicesResource

from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope

pytestmark = pytest.mark.anyio

DAY_MS = 86_400_000


async def new_user(admin: AuthPIAdmin, issuer: Issuer) -> User:
    body: dict[str, Any] = {"username_type": "email", "username": f"{uuid.uuid4().hex[:8]}@example.com"}
    return await admin.issuer(issuer.id).users.create(body)  # type: ignore[arg-type]


def api(admin: AuthPIAdmin, issuer: Issuer, user: User) -> TrustedDevicesResource:
    return admin.issuer(issuer.id).user(user.id).trusted_devices


def new_fingerprint() -> str:
    """What a browser's device cookie digests to (SHA-256, hex)."""
    return hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()


async def test_create_list_and_delete_with_if_match(admin: AuthPIAdmin, issuer: Issuer) -> None:
    devices = api(admin, issuer, await new_user(admin, issuer))
    fingerprint = new_fingerprint()
    before = int(time.time() * 1000)
    created = await devices.create(
        {
            "fingerprint": fingerprint.upper(),
            "name": "Work laptop",
            "user_agent": "Firefox",
            "ttl_seconds": 3600,
        }
    )
    assert created.device_id.startswith("dev_")
    assert before + 3_600_000 <= created.expires_at <= int(time.time() * 1000) + 3_600_000
    default = await devices.create({"fingerprint": new_fingerprint()})
    [first, second] = sorted((await devices.list()).data, key=lambda d: d.id)
    assert first.id == created.device_id and second.id == default.device_id
    assert first.fingerprint == fingerprint and first.name == "Work laptop" and first.user_agent == "Firefox"
    assert first.expires_at == created.expires_at and first.last_used_at is None
    # Without ttl_seconds: the issuer's trusted_device_days (30 by default).
    assert second.expires_at - second.trusted_at == 30 * DAY_MS and second.name is None

    with pytest.raises(PreconditionFailedError):
        await devices.delete(created.device_id, if_match='"1"')
    await devices.delete(created.device_id, if_match=created._etag)
    assert [d.id for d in (await devices.list()).data] == [default.device_id]
    with pytest.raises(NotFoundError):
        await devices.delete(created.device_id)


async def test_revoke_all_with_if_match_and_idempotent_replay(admin: AuthPIAdmin, issuer: Issuer) -> None:
    user = await new_user(admin, issuer)
    devices = api(admin, issuer, user)
    for _ in range(3):
        await devices.create({"fingerprint": new_fingerprint()})
    with pytest.raises(PreconditionFailedError):
        await devices.revoke_all(if_match='"1"')
    assert len((await devices.list()).data) == 3
    current = await admin.issuer(issuer.id).users.get(user.id)
    key = str(uuid.uuid4())
    revoked = await devices.revoke_all(if_match=current._etag, idempotency_key=key)
    assert revoked.revoked_count == 3 and (await devices.list()).data == []
    replayed = await devices.revoke_all(if_match=current._etag, idempotency_key=key)
    assert replayed.revoked_count == 3  # the first answer, nothing revoked twice
    assert (await devices.revoke_all()).revoked_count == 0


async def test_idempotent_create_and_a_fingerprint_trusted_once(admin: AuthPIAdmin, issuer: Issuer) -> None:
    devices = api(admin, issuer, await new_user(admin, issuer))
    body = {"fingerprint": new_fingerprint(), "name": "Phone"}
    key = str(uuid.uuid4())
    first = await devices.create(body, idempotency_key=key)
    again = await devices.create(body, idempotency_key=key)
    assert again.device_id == first.device_id and again.expires_at == first.expires_at
    assert len((await devices.list()).data) == 1
    with pytest.raises(ConflictError):
        await devices.create(body)  # the same fingerprint, without the key: already trusted
    other = api(admin, issuer, await new_user(admin, issuer))
    with pytest.raises(ConflictError):
        await other.create(body)  # one cookie stands for one device of one user


async def test_other_accounts_issuers_and_users_are_not_found(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    unique: str,
) -> None:
    user = await new_user(admin, issuer)
    devices = api(admin, issuer, user)
    created = await devices.create({"fingerprint": new_fingerprint()})
    neighbour = api(admin, issuer, await new_user(admin, issuer))
    with pytest.raises(NotFoundError):
        await neighbour.delete(created.device_id)
    assert (await neighbour.revoke_all()).revoked_count == 0
    sibling = await admin.issuers.create({"name": f"sibling-{unique}"})
    with pytest.raises(NotFoundError):
        await admin.issuer(sibling.id).user(user.id).trusted_devices.list()
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        theirs = other.issuer(issuer.id).user(user.id).trusted_devices
        for attempt in (
            theirs.list(),
            theirs.create({"fingerprint": new_fingerprint()}),
            theirs.revoke_all(),
            theirs.delete(created.device_id),
        ):
            with pytest.raises(NotFoundError):
                await attempt
    assert [d.id for d in (await devices.list()).data] == [created.device_id]


async def test_scopes_are_enforced(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    user = await new_user(admin, issuer)
    created = await api(admin, issuer, user).create({"fingerprint": new_fingerprint()})
    key = await make_key(["issuers.users.trusted_devices:read"])
    async with client_for(key.id, key.secret_plain) as reader:
        mine = reader.issuer(issuer.id).user(user.id).trusted_devices
        assert len((await mine.list()).data) == 1
        for attempt in (
            mine.create({"fingerprint": new_fingerprint()}),
            mine.revoke_all(),
            mine.delete(created.device_id),
        ):
            with pytest.raises(ForbiddenError):
                await attempt
    verifiers_only = await make_key(["issuers.users.verifiers:write"])
    async with client_for(verifiers_only.id, verifiers_only.secret_plain) as other:
        with pytest.raises(ForbiddenError):
            await other.issuer(issuer.id).user(user.id).trusted_devices.list()


async def test_bodies_are_bounded(admin: AuthPIAdmin, issuer: Issuer, server: Any) -> None:
    user = await new_user(admin, issuer)
    path = f"/v1/accounts/{server.account_id}/issuers/{issuer.id}/users/{user.id}/trusted-devices"
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key) as raw:
        for body in (
            {},
            {"fingerprint": "not-a-digest"},
            {"fingerprint": "a" * 65},
            {"fingerprint": new_fingerprint(), "name": "x" * 201},
            {"fingerprint": new_fingerprint(), "user_agent": "x" * 501},
            {"fingerprint": new_fingerprint(), "ttl_seconds": 59},
            {"fingerprint": new_fingerprint(), "ttl_seconds": 366 * 86400},
            {"fingerprint": new_fingerprint(), "secret": "x"},
        ):
            response = await raw.post(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code in (400, 422), (body, response.text)
            assert_error_envelope(response.json())
        too_long = await raw.delete(f"{path}/{'d' * 65}")
        assert too_long.status_code in (400, 404, 422)
    assert (await api(admin, issuer, user).list()).data == []


async def test_zero_days_switches_trusted_devices_off(admin: AuthPIAdmin, issuer: Issuer) -> None:
    scope = admin.issuer(issuer.id)
    for bad in (-1, 366):
        with pytest.raises(ValidationError):
            await scope.update({"settings": {"security": {"mfa": {"trusted_device_days": bad}}}})
    await scope.update({"settings": {"security": {"mfa": {"trusted_device_days": 0}}}})
    with pytest.raises(ConflictError):
        await api(admin, issuer, await new_user(admin, issuer)).create({"fingerprint": new_fingerprint()})


async def test_password_change_revokes_and_events_never_carry_the_fingerprint(
    admin: AuthPIAdmin, issuer: Issuer
) -> None:
    user = await new_user(admin, issuer)
    devices = api(admin, issuer, user)
    fingerprint = new_fingerprint()
    created = await devices.create({"fingerprint": fingerprint, "name": "Tablet"})
    await admin.issuer(issuer.id).users.update(user.id, {"password": "a brand new passphrase 42"})
    assert (await devices.list()).data == []

    found: dict[str, Any] = {}
    for kind in ("user.device.trusted", "user.device.revoked"):
        async for event in admin.events.list_all(limit=100, user_id=user.id, event_types=kind):
            if event.subject and event.subject.get("id") == created.device_id:
                found[event.type] = event
    assert set(found) == {"user.device.trusted", "user.device.revoked"}, found
    revoked = found["user.device.revoked"]
    assert revoked.data and revoked.data["reason"] == "password_changed" and revoked.data["name"] == "Tablet"
    for event in found.values():
        assert fingerprint not in json.dumps(event.model_dump(mode="json")).lower()
