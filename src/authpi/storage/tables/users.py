from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class User(Versioned, Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("issuer_id", "username_key"),
        Index("ix_users_issuer_id_id", "issuer_id", "id"),
        Index("ix_users_issuer_id_status_id", "issuer_id", "status", "id"),
        Index("ix_users_deleted_at", "deleted_at"),  # the purge of soft-deleted rows
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    username_type: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(320))
    # Normalised form (lower-cased e-mail) that carries the per-issuer uniqueness rule.
    username_key: Mapped[str] = mapped_column(String(320))
    username_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scopes: Mapped[list[Any] | None] = mapped_column()
    security: Mapped[dict[str, Any] | None] = mapped_column()
    # The approval decision of a user who signed up to an issuer in approval mode.
    approval: Mapped[dict[str, Any] | None] = mapped_column()
    preferences: Mapped[dict[str, Any] | None] = mapped_column()
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column()
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    password_hash: Mapped[str | None] = mapped_column(Text)
    password_changed_at: Mapped[int | None] = mapped_column(BigInteger)
    # Set while the password is a temporary one an administrator gave (decision 30): it signs in
    # until then, and only to choose a new password.
    password_temporary_until: Mapped[int | None] = mapped_column(BigInteger)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
