"""Statements whose SQLAlchemy construct differs by backend but whose SQL is the same on both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import FromClause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def upsert(session: AsyncSession, table: FromClause) -> Any:
    """``INSERT`` with ``on_conflict_do_update`` / ``on_conflict_do_nothing`` for the session's
    backend (both speak ``INSERT … ON CONFLICT … RETURNING``)."""
    return _INSERTS[session.get_bind().dialect.name](table)
