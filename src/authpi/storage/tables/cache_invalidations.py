from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class CacheInvalidation(Base):
    """One cache eviction for every worker to apply (storage.invalidation), used on SQLite only:
    the workers of the one instance poll for rows newer than the last one they applied.
    Housekeeping drops rows after a minute."""

    __tablename__ = "cache_invalidations"
    # AUTOINCREMENT: an ID is never reused, even once every row is purged, so "newer than the
    # last one applied" never skips a row.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
