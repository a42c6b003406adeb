from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class SigningKey(Base):
    """A per-issuer JOSE signing key; the private half is sealed under the master key."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        Index("ix_signing_keys_issuer_id_alg", "issuer_id", "alg"),
        # One signing key per issuer and algorithm: workers racing to create an issuer's first keys,
        # or two rotations at once, cannot both succeed; the loser reloads the winner's key.
        Index(
            "uq_signing_keys_active_issuer_id_alg",
            "issuer_id",
            "alg",
            unique=True,
            sqlite_where=text("retired_at IS NULL"),
            postgresql_where=text("retired_at IS NULL"),
        ),
        Index("ix_signing_keys_unpublish_at", "unpublish_at"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    sealed_private: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Set when a newer key takes over signing; the key stays published until ``unpublish_at``.
    retired_at: Mapped[int | None] = mapped_column(BigInteger)
    unpublish_at: Mapped[int | None] = mapped_column(BigInteger)
