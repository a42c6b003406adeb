from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class PasskeyChallenge(Base):
    """One WebAuthn ceremony in progress on the hosted pages: its challenge, bound to the pending
    authorization request and to the browser that asked for it (the digest of its CSRF cookie).

    A challenge is spent by deleting its row (``DELETE … WHERE id = …`` answers once), so a
    response is accepted at most once however often it is sent; it also dies with the request (by
    cascade) and after ``expires_at`` (purged by housekeeping). ``purpose`` is ``authenticate`` or
    ``register``; ``user_id`` names whose credential is expected (second factor, enrollment) and
    ``data`` keeps what a sign-up ceremony creates the account from. Challenges are public nonces,
    not secrets: the browser receives them in clear."""

    __tablename__ = "passkey_challenges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    # None for a ceremony of the account portal (bound to the browser and the signed-in user).
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("authorization_requests.id", ondelete="CASCADE")
    )
    browser: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(24))
    challenge: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
