from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class OneTimeCode(Base):
    """One code or link sent by email or SMS: a sign-in code, a password reset, a verification of an
    address. What was sent is never stored: ``code_hash`` is a keyed HMAC of the code (a 6-digit code
    must not be brute-forceable from a copy of the database), ``link_hash`` the SHA-256 of a 32-byte
    random link token.

    ``attempts`` counts code checks, each counted by one ``UPDATE`` before the comparison; the code
    is spent by ``UPDATE … SET consumed_at … WHERE consumed_at IS NULL`` (answers once). A newer code
    for the same purpose and person ends the older ones (their ``expires_at`` becomes the moment of
    the new one). ``browser`` is the digest of the CSRF cookie of the browser that asked (as for
    passkey challenges): a link opened in another browser is told apart. Expired rows are purged by
    housekeeping; rows die with their issuer, user or authorization request by cascade."""

    __tablename__ = "one_time_codes"
    __table_args__ = (
        # Superseding and the resend cooldown: the newest code of a purpose for a recipient or user.
        Index("ix_one_time_codes_issuer_id_purpose_recipient", "issuer_id", "purpose", "recipient"),
        Index("ix_one_time_codes_user_id_purpose", "user_id", "purpose"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("authorization_requests.id", ondelete="CASCADE"), index=True
    )
    browser: Mapped[str | None] = mapped_column(String(64))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    consumed_at: Mapped[int | None] = mapped_column(BigInteger)
