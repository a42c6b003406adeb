"""Conditional writes for versioned resources (If-Match), written once for every resource.

A change to a resource is decided on the state read, so the read and the write must act as one:

1. ``for_update`` reads the row under a row lock (PostgreSQL), or inside the write transaction
   (SQLite, see ``storage.sqlite_writes``), and refreshes a copy this session may already hold;
2. ``claim`` evaluates If-Match against that row, then moves its version (``updated_at``, which the
   ETag is derived from) with ``UPDATE … WHERE id = ? AND updated_at = <version read>``. The
   database decides: if the row changed in between, nothing is written and the request fails
   (412 with an If-Match, a retryable 409 without), never overwriting the other change.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from authpi.clock import next_version
from authpi.services.errors import ConcurrentChange, NotFound, PreconditionFailed, check_etag
from authpi.storage.tables.base import Versioned

S = TypeVar("S", bound=Select[Any])


def for_update(stmt: S) -> S:
    """``stmt`` as the read that precedes a change of the rows it returns."""
    return stmt.with_for_update().execution_options(populate_existing=True)


async def claim(session: AsyncSession, row: Versioned, what: str, if_match: str | None) -> None:
    """Check ``if_match`` against ``row`` and give it its next version, atomically with the check.

    Call it once per change, after reading ``row`` with ``for_update`` and before changing it; the
    row object carries the new version (and ETag) from then on."""
    check_etag(what, if_match, row.etag)
    entity = type(row)
    mapper = inspect(entity)
    identity = mapper.primary_key_from_instance(row)
    key = [column == value for column, value in zip(mapper.primary_key, identity, strict=True)]
    read = row.updated_at
    version = next_version(read)
    moved = await session.execute(
        update(entity)
        .where(*key, entity.updated_at == read)
        .values(updated_at=version)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        current = await session.scalar(select(entity.updated_at).where(*key))
        if current is None:
            raise NotFound(what)
        if if_match is not None and f'"{current}"' not in if_match:
            raise PreconditionFailed(what, f'"{current}"')
        raise ConcurrentChange(what)
    set_committed_value(row, "updated_at", version)
