from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    cast,
    func,
    literal,
)
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Session(Versioned, Base):
    """An ``op`` session (the browser's sign-in at the issuer) or an ``rp`` session (one client's
    token family under an op session)."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id_id", "user_id", "id"),
        Index("ix_sessions_issuer_id_id", "issuer_id", "id"),
        Index("ix_sessions_op_session_id", "op_session_id"),
        # Housekeeping finds ended sessions through these (and ``ix_sessions_idle_deadline`` below).
        Index("ix_sessions_expires_at", "expires_at"),
        Index("ix_sessions_status_status_at", "status", "status_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(4))
    op_session_id: Mapped[str | None] = mapped_column(String(40))
    client_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    authentication: Mapped[dict[str, Any] | None] = mapped_column()
    device: Mapped[dict[str, Any] | None] = mapped_column()
    origin: Mapped[str | None] = mapped_column(Text)
    ttl: Mapped[int] = mapped_column(Integer)
    idle_timeout: Mapped[int] = mapped_column(Integer)
    auth_time: Mapped[int] = mapped_column(BigInteger)
    last_activity_at: Mapped[int | None] = mapped_column(BigInteger)
    access_token_issued_at: Mapped[int | None] = mapped_column(BigInteger)
    refresh_token_issued_at: Mapped[int | None] = mapped_column(BigInteger)
    refresh_count: Mapped[int] = mapped_column(Integer, default=0)
    compromised: Mapped[bool] = mapped_column(Boolean, default=False)
    compromised_at: Mapped[int | None] = mapped_column(BigInteger)
    compromised_reason: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # SHA-256 of the browser cookie secret (op sessions only); the secret itself is never stored.
    cookie_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


def idle_deadline() -> ColumnElement[int]:
    """When an ``active`` session expires for want of activity (ms). The factor is inlined, not
    a bound parameter: SQLite uses an expression index only for a query that spells it the same."""
    columns = Session.__table__.c
    idle_ms = cast(columns.idle_timeout, BigInteger) * literal(1000, literal_execute=True)
    return func.coalesce(columns.last_activity_at, columns.created_at) + idle_ms


# Housekeeping finds sessions idle past their timeout through this one.
Index("ix_sessions_status_idle_deadline", Session.__table__.c.status, idle_deadline())
