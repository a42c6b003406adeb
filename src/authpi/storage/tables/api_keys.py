from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class ApiKey(Versioned, Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_account_id_id", "account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any] | None] = mapped_column()
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    ip_allowlist: Mapped[list[Any] | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    secret_digest: Mapped[str] = mapped_column(String(64))
    secret_hint: Mapped[str | None] = mapped_column(String(16))
    last_rotated_at: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
