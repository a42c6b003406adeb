"""Cache invalidation across workers and instances: a write that changes something a worker caches
(issuer, client and origins rows, an issuer's signing keys, …) evicts it in every worker of every
instance within about a second instead of when the entry's freshness runs out.

A cache subscribes once (``subscribe``: how to evict one ``(kind, key)``, how to clear everything);
a write calls ``evict_everywhere(session, kind, key)`` inside its transaction. Once it commits, the
eviction reaches every worker, the writer's own at once, through one transport:

- Redis pub/sub when ``AUTHPI_REDIS_URL`` is set: published right after the commit on the channel
  ``<AUTHPI_REDIS_PREFIX>:invalidate``.
- PostgreSQL without Redis: ``NOTIFY`` inside the transaction (PostgreSQL delivers it at commit and
  drops it on rollback); every worker ``LISTEN``s on a connection of its own.
- SQLite (one machine, several worker processes): a ``cache_invalidations`` row inside the
  transaction; every worker polls for newer rows every half second. Polling one indexed table is
  next to free in WAL mode and, unlike a socket between the workers, needs no coordination, works
  for ``authpi`` commands run beside the server and commits or rolls back with the write.

A follower that lost its connection (or could not poll) may have missed evictions: once it is back
it clears every cache, so nothing stays stale past the outage. The caches' own freshness limits stay
as the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.settings import Settings
from authpi.storage.after_commit import after_commit
from authpi.storage.tables.cache_invalidations import CacheInvalidation

log = logging.getLogger("authpi.invalidation")

PG_CHANNEL = "authpi_invalidate"
POLL_SECONDS = 0.5  # SQLite: how often a worker looks for new rows
KEEP_ROWS_MS = 60_000  # SQLite: rows older than this are purged by housekeeping
HEALTH_CHECK_SECONDS = 5.0  # a silent connection is checked this often
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # back-off between reconnection attempts

Evict = Callable[[str, str], None]
Clear = Callable[[], None]

_caches: dict[str, tuple[Evict, Clear]] = {}


def subscribe(name: str, evict: Evict, clear: Clear) -> None:
    """Register a cache under ``name`` (registering the name again replaces it). ``evict`` gets
    every ``(kind, key)`` and ignores the kinds it does not hold."""
    _caches[name] = (evict, clear)


def evict_locally(kind: str, key: str) -> None:
    for evict, _ in list(_caches.values()):
        evict(kind, key)


def clear_all() -> None:
    for _, clear in list(_caches.values()):
        clear()


# --- publishing ------------------------------------------------------------------------------------


class _RedisPublisher:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._client: Any = None
        self._pending: set[asyncio.Task[None]] = set()

    def publish_soon(self, kind: str, key: str) -> None:
        """Publish from a synchronous after-commit hook; ``flush`` waits for what is in flight."""
        task = asyncio.get_running_loop().create_task(self._publish(kind, key))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, kind: str, key: str) -> None:
        try:
            if self._client is None:
                import redis.asyncio as redis

                self._client = redis.from_url(self.url)
            await self._client.publish(self.channel, _payload(kind, key))
        except Exception as exc:  # the entry then lives until its freshness runs out
            log.warning("could not publish a cache eviction to Redis: %s", type(exc).__name__)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5.0)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


_redis: _RedisPublisher | None = None


def configure(settings: Settings) -> None:
    """Choose the transport for this process (every command that writes runs this)."""
    global _redis
    _redis = _RedisPublisher(settings.redis_url, redis_channel(settings)) if settings.redis_url else None


def redis_channel(settings: Settings) -> str:
    return f"{settings.redis_prefix}:invalidate"


def _payload(kind: str, key: str) -> str:
    return json.dumps([kind, key], separators=(",", ":"))


def _apply(payload: str | bytes) -> None:
    try:
        kind, key = json.loads(payload)
    except (ValueError, TypeError):
        log.warning("ignored a malformed cache eviction message")
        return
    if isinstance(kind, str) and isinstance(key, str):
        evict_locally(kind, key)


async def evict_everywhere(session: AsyncSession, kind: str, key: str) -> None:
    """Once ``session``'s transaction commits, evict ``(kind, key)`` from every worker's caches
    (this worker's at once). Nothing happens if it rolls back. The caller commits."""
    after_commit(session, lambda: evict_locally(kind, key))
    if _redis is not None:
        after_commit(session, lambda: _redis.publish_soon(kind, key) if _redis else None)
    elif session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(PG_CHANNEL, _payload(kind, key))))
    else:
        await session.execute(insert(CacheInvalidation).values(kind=kind, key=key, created_at=now_ms()))


async def flush() -> None:
    """Wait for evictions still being published (a command that exits right after its commit)."""
    if _redis is not None:
        await _redis.flush()


# --- following -------------------------------------------------------------------------------------


class Follower:
    """Applies every other process's evictions in this worker, reconnecting after a failure."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        sqlite = settings.resolved_database_url.startswith("sqlite")
        self.transport = "redis" if settings.redis_url else "sqlite" if sqlite else "postgresql"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        follow = {
            "redis": self._follow_redis,
            "postgresql": self._follow_postgresql,
            "sqlite": self._poll_sqlite,
        }[self.transport]
        attempt = 0
        while True:
            try:
                await follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning(
                        "cache invalidation (%s) lost: %s; reconnecting", self.transport, type(exc).__name__
                    )
                    attempt = 0
                self.connected.clear()
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1

    def _following(self) -> None:
        """Connected (again): what was missed while away (or before the first connection, while
        requests already filled caches) is unknown, so every cache starts over."""
        clear_all()
        self.connected.set()
        log.info("cache invalidation follows %s", self.transport)

    async def _follow_redis(self) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No silent reconnection inside redis-py: a lost connection must surface here, since the
        # messages published meanwhile are gone and the caches must start over.
        assert self._settings.redis_url is not None
        client = redis.from_url(
            self._settings.redis_url, retry=Retry(NoBackoff(), 0), health_check_interval=HEALTH_CHECK_SECONDS
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(redis_channel(self._settings))
            self._following()
            while True:
                message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                if message is not None and message.get("type") == "message":
                    _apply(message["data"])
                elif message is None:
                    await pubsub.ping()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _follow_postgresql(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        url = make_url(self._settings.resolved_database_url).set(drivername="postgresql")
        conn = await asyncpg.connect(
            url.render_as_string(hide_password=False), timeout=self._settings.database_connect_timeout
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(PG_CHANNEL, lambda _conn, _pid, _channel, payload: _apply(payload))
            self._following()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), HEALTH_CHECK_SECONDS)
                if lost.is_set():
                    raise ConnectionError("the LISTEN connection closed")
                # A connection cut without a word (a failover, a firewall) shows up here.
                await conn.fetchval("SELECT 1", timeout=HEALTH_CHECK_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    async def _poll_sqlite(self) -> None:
        from authpi.storage.db import make_engine

        engine = make_engine(self._settings, pool_size=1)
        table = CacheInvalidation.__table__
        try:
            async with engine.connect() as conn:
                last = (await conn.execute(select(func.max(table.c.id)))).scalar() or 0
                await conn.rollback()
            self._following()
            while True:
                await asyncio.sleep(POLL_SECONDS)
                async with engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            select(table.c.id, table.c.kind, table.c.key)
                            .where(table.c.id > last)
                            .order_by(table.c.id)
                            .limit(1000)
                        )
                    ).all()
                    await conn.rollback()
                for row_id, kind, key in rows:
                    evict_locally(kind, key)
                    last = row_id
        finally:
            await engine.dispose()
