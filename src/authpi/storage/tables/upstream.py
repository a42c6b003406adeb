"""Sign-in through another identity provider: the identities linked to users, and the upstream
authorization requests in flight."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class UpstreamIdentity(Base):
    """One identity at an upstream provider linked to a user: the provider is an auth method of the
    issuer (``method_id``) or an organization's SSO connection (``org_id``), exactly one of them.

    The provider's stable subject identifies it (never the email, which can change hands); one
    subject of one method (or organization) belongs to one user. ``sealed_tokens`` keeps the
    provider's tokens only when the method's ``store_tokens`` setting asks for it, sealed with the
    SecretBox."""

    __tablename__ = "upstream_identities"
    __table_args__ = (
        UniqueConstraint("method_id", "subject"),
        UniqueConstraint("org_id", "subject"),
        Index("ix_upstream_identities_user_id", "user_id"),
        Index("ix_upstream_identities_issuer_id_id", "issuer_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    method_id: Mapped[str | None] = mapped_column(ForeignKey("auth_methods.id", ondelete="CASCADE"))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    sealed_tokens: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int] = mapped_column(BigInteger)


class UpstreamRequest(Base):
    """An authorization request sent to an upstream provider, waiting for its callback.

    Bound to the pending authorization request it serves and to the browser that started it (the
    digest of its CSRF cookie). The ``state`` sent upstream is stored only as a digest; the
    ``nonce`` and the PKCE verifier are sealed with the SecretBox. A callback spends the row by
    deleting it, so a state answers once; expired rows are purged by housekeeping."""

    __tablename__ = "upstream_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state_digest: Mapped[str] = mapped_column(String(64), unique=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    # The method whose button started it, or the organization whose SSO connection it goes to.
    method_id: Mapped[str | None] = mapped_column(ForeignKey("auth_methods.id", ondelete="CASCADE"))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(ForeignKey("authorization_requests.id", ondelete="CASCADE"))
    browser: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
