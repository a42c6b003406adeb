from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Verifier(Versioned, Base):
    """A user's second factor or passkey (§C.7): ``totp``, ``backup_codes`` or ``passkey``.

    A TOTP verifier is ``pending`` from its enrollment until its first code confirms it (and is
    purged if that never happens by ``expires_at``); ``last_used_step`` makes each TOTP step usable
    once. A passkey keeps its credential id, COSE public key, sign counter and backup flags. Backup
    codes are rows of ``backup_codes`` under one verifier. No secret is ever returned: the TOTP
    secret is sealed under the master key, codes are digests.
    """

    __tablename__ = "verifiers"
    __table_args__ = (
        Index("ix_verifiers_user_id_id", "user_id", "id"),
        Index("ix_verifiers_expires_at", "expires_at"),
        UniqueConstraint("issuer_id", "credential_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(24))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")  # pending | active
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    # totp
    secret_sealed: Mapped[str | None] = mapped_column(Text)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    # passkey
    credential_id: Mapped[str | None] = mapped_column(String(1400))
    public_key: Mapped[str | None] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[Any] | None] = mapped_column()
    aaguid: Mapped[str | None] = mapped_column(String(36))
    backup_eligible: Mapped[bool | None] = mapped_column(Boolean)
    backed_up: Mapped[bool | None] = mapped_column(Boolean)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class BackupCode(Base):
    """One single-use backup code of a ``backup_codes`` verifier, as a digest; spending it is an
    ``UPDATE … WHERE used_at IS NULL`` so a code is accepted once however often it is sent."""

    __tablename__ = "backup_codes"

    verifier_id: Mapped[str] = mapped_column(ForeignKey("verifiers.id", ondelete="CASCADE"), primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class TrustedDevice(Base):
    """A browser a user chose to trust after a second factor (§C.3): it skips the second factor until
    ``expires_at`` or revocation. ``fingerprint`` is the digest of the device cookie's secret."""

    __tablename__ = "trusted_devices"
    __table_args__ = (
        Index("ix_trusted_devices_user_id_id", "user_id", "id"),
        Index("ix_trusted_devices_expires_at", "expires_at"),
        UniqueConstraint("fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    trusted_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
