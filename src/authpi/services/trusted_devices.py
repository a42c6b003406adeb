"""Trusted devices (idp-api §C.3, issue 10 item 6): browsers that skip the second factor.

After a second factor the user may trust the browser for ``settings.security.mfa.trusted_device_days``
(decision 29; 0 switches trusted devices off). The browser then holds a device cookie: a random
256-bit secret of which only the SHA-256 digest is stored (``fingerprint``). At the user's next
sign-in in that browser the cookie is looked up by that digest, for that user of that issuer only,
until the record expires or is revoked. Revoking deletes the record (§B.5: hard delete), so the
cookie matches nothing any more; a password change revokes every device of the user.

Nothing here ever returns or records the cookie secret: events carry the device's id, name and
expiry, never the fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.services import events
from authpi.services.errors import ConcurrentChange, Conflict, NotFound, check_etag
from authpi.services.issuer_settings import trusted_device_days
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.verifiers import TrustedDevice

WHAT = "Trusted device"
DAY_MS = 86_400_000
MAX_PER_USER = 50
# last_used_at moves at most this often: a sign-in does not rewrite the row each time.
TOUCH_EVERY_MS = 60_000
SECRET_BYTES = 32
TAKEN = "A device with this fingerprint is already trusted"

# Why a device stopped being trusted (the ``reason`` of ``user.device.revoked``).
REVOKED_BY_ADMIN = "admin"
REVOKED_BY_USER = "user"  # from the account portal
PASSWORD_CHANGED = "password_changed"
REPLACED = "replaced"  # the oldest of a user's devices, dropped for a new one beyond the cap


@dataclass(frozen=True)
class Trusted:
    """A device just trusted at sign-in, with the cookie secret its browser keeps (never stored)."""

    device: TrustedDevice
    secret: str


def etag(row: TrustedDevice) -> str:
    return f'"{row.updated_at}"'


def days(issuer: Issuer) -> int:
    """How long a trust lasts for this issuer (0: trusted devices are switched off)."""
    return trusted_device_days(issuer.settings)


def fingerprint(secret: str) -> str:
    """The stored form of a device cookie: its SHA-256 digest (64 lowercase hex digits)."""
    return hashing.digest(secret)


# --- reading ----------------------------------------------------------------------------------------


async def list_for_user(session: AsyncSession, user_id: str) -> Sequence[TrustedDevice]:
    """The user's devices that are still trusted (expired ones wait for housekeeping, unlisted)."""
    stmt = select(TrustedDevice).where(TrustedDevice.user_id == user_id, TrustedDevice.expires_at > now_ms())
    return (await session.scalars(stmt.order_by(TrustedDevice.id))).all()


async def find(
    session: AsyncSession, issuer_id: str, user_id: str, cookie: str | None
) -> TrustedDevice | None:
    """The live device the browser's ``cookie`` stands for, if it belongs to this user of this issuer.

    The lookup is by the cookie's digest (a unique index): nothing is compared character by
    character against a stored secret, so its timing tells nothing about one."""
    if not cookie or len(cookie) > 256:
        return None
    row: TrustedDevice | None = await session.scalar(
        select(TrustedDevice).where(TrustedDevice.fingerprint == fingerprint(cookie))
    )
    if row is None or row.issuer_id != issuer_id or row.user_id != user_id or row.expires_at <= now_ms():
        return None
    return row


async def touch(session: AsyncSession, row: TrustedDevice) -> None:
    """Record a use of ``row`` (at most once a minute; the ETag does not move for it)."""
    now = now_ms()
    if row.last_used_at is not None and now - row.last_used_at < TOUCH_EVERY_MS:
        return
    await session.execute(
        update(TrustedDevice)
        .where(TrustedDevice.id == row.id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(row, "last_used_at", now)  # already written: no second UPDATE at flush


# --- events -----------------------------------------------------------------------------------------


def _public(row: TrustedDevice) -> dict[str, Any]:
    """What an event may say about a device: never its fingerprint (the cookie's digest)."""
    return {"id": row.id, "name": row.name, "expires_at": row.expires_at}


async def _emit(
    session: AsyncSession, type_: str, row: TrustedDevice, account_id: str | None = None, **data: Any
) -> None:
    """Records ``type_`` about ``row`` (``account_id``: looked up from the issuer when not given)."""
    await events.emit(
        session,
        type_,
        subject={"type": "trusted_device", "id": row.id},
        data={**_public(row), **data},
        account_id=account_id,
        issuer_id=row.issuer_id,
        user_id=row.user_id,
    )


# --- trusting ---------------------------------------------------------------------------------------


async def _count(session: AsyncSession, user_id: str) -> int:
    found = await session.scalar(
        select(func.count()).select_from(TrustedDevice).where(TrustedDevice.user_id == user_id)
    )
    return int(found or 0)


async def _add(
    session: AsyncSession,
    issuer: Issuer,
    user_id: str,
    *,
    digest: str,
    ttl_ms: int,
    name: str | None,
    user_agent: str | None,
    **data: Any,
) -> TrustedDevice:
    now = now_ms()
    # The user's expired devices first: they no longer count toward the cap.
    await session.execute(
        delete(TrustedDevice).where(TrustedDevice.user_id == user_id, TrustedDevice.expires_at <= now)
    )
    row = TrustedDevice(
        id=ids.ulid("dev_"),
        issuer_id=issuer.id,
        user_id=user_id,
        fingerprint=digest,
        name=name,
        user_agent=user_agent[:500] if user_agent else None,
        trusted_at=now,
        expires_at=now + ttl_ms,
        last_used_at=None,
        updated_at=now,
    )
    taken = await session.scalar(select(TrustedDevice.id).where(TrustedDevice.fingerprint == digest))
    if taken is not None:
        raise Conflict(TAKEN)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent request registered the same fingerprint first
        await session.rollback()
        raise Conflict(TAKEN) from exc
    await _emit(session, "user.device.trusted", row, issuer.account_id, **data)
    return row


async def trust_browser(
    session: AsyncSession, issuer: Issuer, user_id: str, *, user_agent: str | None
) -> Trusted | None:
    """Trust the browser that just proved a second factor: a new cookie secret and its record.

    None while the issuer has trusted devices switched off. Beyond the cap, the user's least
    recently used device makes room (the user asked to trust this one; refusing would be worse)."""
    period = days(issuer)
    if period <= 0:
        return None
    while await _count(session, user_id) >= MAX_PER_USER:
        oldest = await session.scalar(
            select(TrustedDevice)
            .where(TrustedDevice.user_id == user_id)
            .order_by(func.coalesce(TrustedDevice.last_used_at, TrustedDevice.trusted_at), TrustedDevice.id)
            .limit(1)
        )
        if oldest is None:
            break
        await _emit(session, "user.device.revoked", oldest, issuer.account_id, reason=REPLACED)
        await session.delete(oldest)
        await session.flush()
    secret = hashing.new_secret(nbytes=SECRET_BYTES)
    row = await _add(
        session,
        issuer,
        user_id,
        digest=fingerprint(secret),
        ttl_ms=period * DAY_MS,
        name=None,
        user_agent=user_agent,
        source="sign_in",
    )
    return Trusted(row, secret)


async def register(
    session: AsyncSession,
    issuer: Issuer,
    user_id: str,
    *,
    digest: str,
    name: str | None,
    user_agent: str | None,
    ttl_seconds: int | None,
) -> TrustedDevice:
    """An administrator pre-registers a device: ``digest`` is the fingerprint (SHA-256 hex of the
    device cookie) a browser must present. Refused while the issuer has trusted devices off."""
    period = days(issuer)
    if period <= 0:
        raise Conflict(
            "Trusted devices are switched off for this issuer "
            "(settings.security.mfa.trusted_device_days is 0)"
        )
    if await _count(session, user_id) >= MAX_PER_USER:
        raise Conflict(f"A user can have at most {MAX_PER_USER} trusted devices; revoke one first")
    ttl_ms = ttl_seconds * 1000 if ttl_seconds is not None else period * DAY_MS
    return await _add(
        session,
        issuer,
        user_id,
        digest=digest.lower(),
        ttl_ms=ttl_ms,
        name=name,
        user_agent=user_agent,
        source="core_api",
    )


# --- revoking ---------------------------------------------------------------------------------------


async def revoke(
    session: AsyncSession,
    issuer: Issuer,
    user_id: str,
    device_id: str,
    if_match: str | None,
    *,
    reason: str = REVOKED_BY_ADMIN,
) -> None:
    """Revoke one device (If-Match against its ETag); its cookie matches nothing from now on."""
    stmt = select(TrustedDevice).where(
        TrustedDevice.id == device_id, TrustedDevice.user_id == user_id, TrustedDevice.expires_at > now_ms()
    )
    row = await session.scalar(stmt.with_for_update().execution_options(populate_existing=True))
    if row is None:
        raise NotFound(WHAT)
    check_etag(WHAT, if_match, etag(row))
    gone = await session.execute(
        delete(TrustedDevice)
        .where(TrustedDevice.id == row.id, TrustedDevice.updated_at == row.updated_at)
        .execution_options(synchronize_session=False)
    )
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentChange(WHAT)
    await _emit(session, "user.device.revoked", row, issuer.account_id, reason=reason)


async def revoke_all(
    session: AsyncSession, user_id: str, *, reason: str, account_id: str | None = None
) -> int:
    """Revoke every device of the user; returns how many were still trusted (expired ones are
    removed too, uncounted and without an event: they trusted nothing any more)."""
    now = now_ms()
    rows = (await session.scalars(select(TrustedDevice).where(TrustedDevice.user_id == user_id))).all()
    live = [row for row in rows if row.expires_at > now]
    for row in live:
        await _emit(session, "user.device.revoked", row, account_id, reason=reason)
    if rows:
        await session.execute(
            delete(TrustedDevice)
            .where(TrustedDevice.id.in_([row.id for row in rows]))
            .execution_options(synchronize_session=False)
        )
    return len(live)
