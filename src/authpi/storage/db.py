"""Engine and session factory for SQLite (WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from authpi import data_dir
from authpi.settings import Settings
from authpi.storage.sqlite_writes import serialise_writes

# How long SQLite waits for another process's writer (busy_timeout), and a writer of this process
# for its turn: longer than any write transaction should take, so only a stuck one trips it.
SQLITE_WRITE_WAIT_S = 10


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_WRITE_WAIT_S * 1000}")
    # 4 MiB of page cache per connection (the default is 8 MiB): a worker keeps a handful of
    # connections, and the OS page cache already holds the hot pages.
    cursor.execute("PRAGMA cache_size=-4096")
    cursor.close()


def make_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """The engine; ``pool_size`` overrides the default for small side pools (e.g. key loading)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        if settings.sqlite_path is not None:
            data_dir.prepare(settings.data_dir, database=settings.sqlite_path)
        # Each aiosqlite connection is a thread; writers take turns (storage.sqlite_writes).
        size = pool_size or 4
        engine = create_async_engine(url, pool_size=size, max_overflow=size)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        serialise_writes(engine, SQLITE_WRITE_WAIT_S)
        return engine
    size = pool_size or 10
    return create_async_engine(url, pool_size=size, max_overflow=size, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
