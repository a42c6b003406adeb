from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Client(Versioned, Base):
    """An OAuth 2.0 / OpenID Connect application registered with an issuer."""

    __tablename__ = "clients"
    __table_args__ = (
        Index("ix_clients_issuer_id_id", "issuer_id", "id"),
        Index("ix_clients_issuer_id_status_id", "issuer_id", "status", "id"),
        Index("ix_clients_deleted_at", "deleted_at"),  # the purge of soft-deleted rows
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    logo_url: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    application_type: Mapped[str] = mapped_column(String(16))
    confidential: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_digest: Mapped[str | None] = mapped_column(String(64))
    secret_rotated_at: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
