from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class CredentialLockout(Base):
    """Recent failed attempts against one credential of an issuer (decision 20).

    ``subject`` is the SHA-256 digest of the normalised identifier, so rows exist alike for accounts
    that do and do not exist, and a password typed into the username field is never stored. A row
    whose ``expires_at`` has passed counts as absent and may be purged.
    """

    __tablename__ = "credential_lockouts"

    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Attempts counted since the row was (re)started, the one in progress included.
    attempts: Mapped[int] = mapped_column(Integer)
    # Below the limit: when the attempts are forgotten; at or past it: when the lock ends.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
