from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class Message(Base):
    """One email or SMS owed to a recipient: the durable outbox row the message sender works from.

    Written in the transaction of the change that causes it, rendered then (the message goes out
    exactly as committed). The rendered subject and bodies carry secrets (codes, links), so they are
    sealed under the master key in ``content_sealed``. ``status``: ``pending`` (owed, due at
    ``next_attempt_at``), ``sending`` (an attempt holds the lease), ``sent``, ``failed`` (the
    attempt budget is spent). A crashed sender's lease simply expires and the row is due again.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # The sender's claim: owed rows of a configured channel, by due time.
        Index("ix_messages_status_channel_next_attempt_at", "status", "channel", "next_attempt_at"),
        # `authpi outbox list [--status]`, newest first.
        Index("ix_messages_status_id", "status", "id"),
        Index("ix_messages_account_id_id", "account_id", "id"),
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    issuer_id: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    content_sealed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
