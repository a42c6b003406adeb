from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class AuthMethod(Versioned, Base):
    __tablename__ = "auth_methods"
    __table_args__ = (Index("ix_auth_methods_issuer_id_id", "issuer_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    enabled_login: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled_signup: Mapped[bool] = mapped_column(Boolean, default=False)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    first_factor_only: Mapped[bool] = mapped_column(Boolean)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Write-only settings (client secrets, private keys), AES-GCM sealed under the master key.
    sealed_secrets: Mapped[str | None] = mapped_column(Text)
