from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonColumn = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JsonColumn, list[Any]: JsonColumn, int: BigInteger}


class Versioned:
    """Rows whose ``updated_at`` (ms) doubles as their ETag."""

    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    @property
    def etag(self) -> str:
        return etag_of(self.updated_at)


def etag_of(updated_at: int) -> str:
    """The strong ETag of a versioned row, also for reads that load its columns without the entity."""
    return f'"{updated_at}"'
