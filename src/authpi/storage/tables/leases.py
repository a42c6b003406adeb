from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base


class Lease(Base):
    """A short, renewable claim on work that one process at a time should do (housekeeping)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    # The claim ends here unless the holder renews it; a crashed holder's claim simply runs out.
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # When the holder last finished the work (ms), for operators.
    last_run_at: Mapped[int | None] = mapped_column(BigInteger)
