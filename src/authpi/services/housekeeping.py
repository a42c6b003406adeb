"""Periodic housekeeping, run by one worker at a time (a lease in ``system_values``)."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.oidc import keys
from authpi.services import idempotency, issuers, lockouts
from authpi.storage.tables.oauth import AuthorizationCode, AuthorizationRequest, RefreshToken, RevokedToken
from authpi.storage.tables.system import SystemValue

LEASE_KEY = "housekeeping_lease"


async def take_lease(session: AsyncSession, seconds: int) -> bool:
    """True when this process may run housekeeping now; others skip until the lease ends."""
    now = now_ms()
    until = str(now + seconds * 1000).rjust(16, "0")
    result = await session.execute(
        update(SystemValue)
        .where(SystemValue.key == LEASE_KEY, SystemValue.value < str(now).rjust(16, "0"))
        .values(value=until)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        await session.commit()
        return True
    await session.rollback()
    if await session.get(SystemValue, LEASE_KEY) is not None:
        return False
    session.add(SystemValue(key=LEASE_KEY, value=until))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def run(session: AsyncSession, box: SecretBox, purge_after_s: int) -> None:
    now = now_ms()
    await idempotency.purge_expired(session)
    await lockouts.purge_expired(session, now)
    await issuers.purge_deleted(session, now - purge_after_s * 1000)
    await session.execute(delete(AuthorizationRequest).where(AuthorizationRequest.expires_at <= now))
    await session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at <= now - 3600_000))
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
    await session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= now))
    await session.commit()
    await keys.rotate_all(session, box, force=False)
