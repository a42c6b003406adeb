"""Engine and session factory for SQLite (WAL) and PostgreSQL (asyncpg).

Every database call is bounded (README, "Configuration"): connecting by
``AUTHPI_DATABASE_CONNECT_TIMEOUT``, each statement by ``AUTHPI_DATABASE_STATEMENT_TIMEOUT`` (PostgreSQL's
``statement_timeout`` and ``idle_in_transaction_session_timeout``, SQLite's ``busy_timeout``), the wait
for a pooled connection by ``AUTHPI_DATABASE_POOL_TIMEOUT``. Checkouts go through the outage breaker
(``storage.health``), which also learns from them when the database becomes unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, PoolProxiedConnection

from authpi import data_dir
from authpi.settings import Settings
from authpi.storage.errors import is_unavailable
from authpi.storage.health import DatabaseHealth, Probe
from authpi.storage.sqlite_writes import serialise_writes

# asyncpg's own timer is a backstop for a server that stopped answering; a live server cancels a
# slow statement first (statement_timeout), with an error that leaves the connection usable.
CLIENT_TIMEOUT_MARGIN_S = 1.0


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # 2 MiB of page cache per connection (the default is 8 MiB): a worker keeps up to 8 idle
        # connections, and the OS page cache already holds the hot pages.
        cursor.execute("PRAGMA cache_size=-2048")
        cursor.close()
        # pysqlite begins the write transaction itself, as BEGIN IMMEDIATE, in the same call as its
        # first write (storage.sqlite_writes); reads outside it stay in autocommit.
        dbapi_connection.isolation_level = "IMMEDIATE"

    return on_connect


def _postgres_connect_args(settings: Settings) -> dict[str, Any]:
    statement_ms = str(int(settings.database_statement_timeout * 1000))
    return {
        "timeout": settings.database_connect_timeout,
        "command_timeout": settings.database_statement_timeout + CLIENT_TIMEOUT_MARGIN_S,
        # A transaction left open by a request that died (or a client that vanished) is ended by
        # the server instead of holding its locks.
        "server_settings": {
            "statement_timeout": statement_ms,
            "idle_in_transaction_session_timeout": statement_ms,
        },
    }


def _guarded_pool(health: DatabaseHealth) -> type[AsyncAdaptedQueuePool]:
    class GuardedPool(AsyncAdaptedQueuePool):
        """Refuses checkouts at once during a known outage, and reports a failed checkout."""

        def connect(self) -> PoolProxiedConnection:
            health.check()
            try:
                return super().connect()
            except Exception as exc:
                if is_unavailable(exc):
                    health.failed(exc)
                raise

    return GuardedPool


def make_engine(
    settings: Settings, *, pool_size: int | None = None, health: DatabaseHealth | None = None
) -> AsyncEngine:
    """The engine; ``pool_size`` overrides the default for small side pools (e.g. key loading)."""
    url = settings.resolved_database_url
    pool: dict[str, Any] = {
        "poolclass": _guarded_pool(health or DatabaseHealth()),
        "pool_timeout": settings.database_pool_timeout,
    }
    if url.startswith("sqlite"):
        if settings.sqlite_path is not None:
            data_dir.prepare(settings.data_dir, database=settings.sqlite_path)
        # Each aiosqlite connection is a thread; writers take turns (storage.sqlite_writes). Eight
        # stay open: under load a worker has that many requests in flight, and an overflow
        # connection costs a thread, the PRAGMAs and the schema parse each time it is opened.
        size = pool_size or 8
        engine = create_async_engine(url, pool_size=size, max_overflow=size, **pool)
        busy_ms = int(settings.database_statement_timeout * 1000)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_ms))
        # A writer of this process waits for its turn as long as for another process's writer.
        serialise_writes(engine, settings.database_statement_timeout)
        return engine
    size = pool_size or 10
    return create_async_engine(
        url,
        pool_size=size,
        max_overflow=size,
        # A connection the server dropped (restart, failover) is replaced at checkout.
        pool_pre_ping=True,
        connect_args=_postgres_connect_args(settings),
        **pool,
    )


def make_probe(settings: Settings) -> tuple[Probe, AsyncEngine]:
    """A check that opens a fresh connection (outside every pool) and runs one statement."""
    url = settings.resolved_database_url
    connect_args = {} if url.startswith("sqlite") else _postgres_connect_args(settings)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)

    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return probe, engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
