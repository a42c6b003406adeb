"""Keyset cursor pagination (A.7), shared by every list endpoint.

IDs are time-ordered, so the cursor is simply the last ID returned: each page is one index range scan
of ``limit + 1`` rows, whatever the depth. Lists in another order (notes: pinned first, then newest)
page on a composite key the same way (``keyset_by``); their resource says how a row becomes a cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Query
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None


def page_request(
    limit: int = Query(50, ge=1, le=100, description="Maximum number of items to return (1-100)"),
    cursor: str | None = Query(
        None, max_length=64, description="Pagination cursor: the last ID of the previous page"
    ),
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


@dataclass(frozen=True)
class Slice:
    rows: Sequence[Any]
    has_more: bool
    next_cursor: str | None


async def keyset(
    session: AsyncSession,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[str],
    request: PageRequest,
    *,
    newest_first: bool = True,
) -> Slice:
    if request.cursor:
        stmt = stmt.where(id_column < request.cursor if newest_first else id_column > request.cursor)
    stmt = stmt.order_by(id_column.desc() if newest_first else id_column.asc()).limit(request.limit + 1)
    rows = list((await session.execute(stmt)).all())
    has_more = len(rows) > request.limit
    rows = rows[: request.limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1][0]
        next_cursor = getattr(last, "id", None) or str(last)
    return Slice(rows=rows, has_more=has_more, next_cursor=next_cursor)


async def keyset_by(
    session: AsyncSession,
    stmt: Select[Any],
    order: Sequence[InstrumentedAttribute[Any]],
    after: Sequence[Any] | None,
    limit: int,
    cursor_of: Callable[[Any], str],
) -> Slice:
    """A page of ``stmt`` in descending ``order`` (whose last column is unique), starting after the
    position ``after`` (the values of a prefix of ``order``): one row-value comparison, which both
    databases answer from an index whose trailing columns are ``order``."""
    if after:
        columns = order[: len(after)]
        stmt = stmt.where(tuple_(*columns) < tuple_(*after))
    stmt = stmt.order_by(*(column.desc() for column in order)).limit(limit + 1)
    rows = list((await session.execute(stmt)).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursor_of(rows[-1][0]) if has_more and rows else None
    return Slice(rows=rows, has_more=has_more, next_cursor=next_cursor)
