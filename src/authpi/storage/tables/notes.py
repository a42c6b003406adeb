from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Note(Versioned, Base):
    """An account's Markdown note about one of its resources (§C.13).

    ``issuer_id`` and ``subject_id`` are plain columns, not foreign keys: a note is part of the
    account's history and outlives its subject (a deleted or purged user, client or issuer). Lists
    run in the order ``pinned desc, created_at desc, id desc``; every filter has an index that ends
    in those three columns, so each page is one range scan.
    """

    __tablename__ = "notes"
    __table_args__ = (
        Index("ix_notes_account_order", "account_id", "pinned", "created_at", "id"),
        Index(
            "ix_notes_subject_order", "account_id", "subject_type", "subject_id", "pinned", "created_at", "id"
        ),
        Index("ix_notes_issuer_order", "account_id", "issuer_id", "pinned", "created_at", "id"),
        Index("ix_notes_created_by_order", "account_id", "created_by", "pinned", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    issuer_id: Mapped[str | None] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_by: Mapped[str | None] = mapped_column(String(64))


class NoteMention(Base):
    """A user of the account mentioned in a note's content (``@[Name](user_id)``)."""

    __tablename__ = "note_mentions"
    __table_args__ = (Index("ix_note_mentions_account_user", "account_id", "mentioned_user_id", "note_id"),)

    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True)
    mentioned_user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)  # order of first appearance in the content
    created_at: Mapped[int] = mapped_column(BigInteger)


class NoteReference(Base):
    """A resource of the account referenced in a note's content (``[[type:id]]``): the backlinks."""

    __tablename__ = "note_references"
    __table_args__ = (Index("ix_note_references_account_ref", "account_id", "ref_type", "ref_id", "note_id"),)

    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True)
    ref_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref_issuer_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
