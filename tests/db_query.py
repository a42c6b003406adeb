"""Reads a running server's database directly, for tests that check what was stored."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from tests.harness import RunningServer


async def rows(server: RunningServer, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders on both backends) against the server's database."""
    url = server.env.get("AUTHPI_DATABASE_URL")
    if url is None:
        with closing(sqlite3.connect(server.data_dir / "authpi.db", timeout=30)) as connection:
            found = list(connection.execute(sql, args).fetchall())
            connection.commit()
            return found
    import asyncpg

    numbered = sql
    for index in range(1, len(args) + 1):
        numbered = numbered.replace("?", f"${index}", 1)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [tuple(record) for record in await connection.fetch(numbered, *args)]
    finally:
        await connection.close()


async def count(server: RunningServer, table: str, where: str = "1 = 1", *args: Any) -> int:
    found = await rows(server, f"SELECT COUNT(*) FROM {table} WHERE {where}", *args)
    return int(found[0][0])
