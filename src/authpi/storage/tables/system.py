from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class SystemValue(Base):
    """Installation-wide values, such as the platform issuer that owns account organizations."""

    __tablename__ = "system_values"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
