from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class Event(Base):
    """One entry of an account's event log (§C.12), written in the transaction of its change.

    IDs are ULIDs of the event's millisecond, so ``id`` order is time order: every list is one
    keyset range scan of an ``(account_id, <filter>, id)`` index, and ``after``/``before`` (and the
    retention purge) become ``id`` bounds. Issuer, user and client are copied out of the subject for
    those filters.
    """

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(64))
    issuer_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    trace: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str | None] = mapped_column(String(16))
    auth: Mapped[dict[str, Any] | None] = mapped_column()
    subject: Mapped[dict[str, Any] | None] = mapped_column()
    data: Mapped[dict[str, Any] | None] = mapped_column()

    __table_args__ = (
        Index("ix_events_account_id_id", "account_id", "id"),
        Index("ix_events_account_id_issuer_id_id", "account_id", "issuer_id", "id"),
        Index("ix_events_account_id_user_id_id", "account_id", "user_id", "id"),
        Index("ix_events_account_id_client_id_id", "account_id", "client_id", "id"),
        Index("ix_events_account_id_type_id", "account_id", "type", "id"),
    )
