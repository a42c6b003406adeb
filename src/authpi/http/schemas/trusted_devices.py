"""Trusted devices (§C.7 ``TrustedDevice``): the public record of a browser that skips the second
factor. ``fingerprint`` is the SHA-256 digest of the device cookie, never the cookie itself."""

from __future__ import annotations

from pydantic import BaseModel, Field

from authpi.http.schemas.common import StrictInput
from authpi.storage.tables.verifiers import TrustedDevice

MAX_TTL_SECONDS = 365 * 86400


class TrustedDeviceCreate(StrictInput):
    """Pre-registers a device: a browser whose device cookie digests to ``fingerprint`` skips the
    second factor of this user until the record expires or is revoked."""

    fingerprint: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 (64 hex digits) of the device cookie value the browser will present",
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    user_agent: str | None = Field(default=None, max_length=500)
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=MAX_TTL_SECONDS,
        description="Lifetime in seconds; default: the issuer's settings.security.mfa.trusted_device_days",
    )


class TrustedDeviceOut(BaseModel):
    id: str
    fingerprint: str
    name: str | None
    user_agent: str | None
    trusted_at: int
    expires_at: int
    last_used_at: int | None


class TrustedDeviceCreated(BaseModel):
    device_id: str
    expires_at: int


class RevokedAllOut(BaseModel):
    revoked_count: int


def device_out(row: TrustedDevice) -> TrustedDeviceOut:
    return TrustedDeviceOut(
        id=row.id,
        fingerprint=row.fingerprint,
        name=row.name,
        user_agent=row.user_agent,
        trusted_at=row.trusted_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )
