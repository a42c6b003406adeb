from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Issuer(Versioned, Base):
    __tablename__ = "issuers"
    __table_args__ = (
        Index("ix_issuers_account_id_id", "account_id", "id"),
        Index("ix_issuers_account_id_status_id", "account_id", "status", "id"),
        Index("ix_issuers_deleted_at", "deleted_at"),  # the purge of soft-deleted rows
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    links: Mapped[dict[str, Any] | None] = mapped_column()
    available_scopes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Denormalised from settings.access.mode so the list filter can use an index.
    access_mode: Mapped[str | None] = mapped_column(String(32))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
