from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class IdempotencyRecord(Base):
    """One ``Idempotency-Key`` per account and calling API key: in flight until the first response
    is stored (A.9). The body is sealed under the master key: create and rotate responses hold secrets."""

    __tablename__ = "idempotency_records"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    authority: Mapped[str] = mapped_column(String(64))  # digest of the caller's scopes and limits
    state: Mapped[str] = mapped_column(String(16))  # in_flight | done
    lease_until: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(Text)
    sealed_body: Mapped[str | None] = mapped_column(Text)
