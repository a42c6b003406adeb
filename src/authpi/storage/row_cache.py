"""A small process-local cache of configuration rows (issuers, clients) read on every protocol
request. Entries live a minute (``AUTHPI_CONFIG_CACHE_SECONDS``); a write through the Core API
evicts the entry in every worker of every instance (``storage.invalidation``), the freshness window
being the backstop should an eviction message be lost.

While the database is unreachable (or too busy to answer), an expired entry keeps serving for up to
``AUTHPI_STALE_CACHE_SECONDS`` after it was loaded (writes need the database too, so little can have
changed), and protocol requests that need nothing else keep working."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from authpi.storage import invalidation
from authpi.storage.errors import is_transient

MAX_ENTRIES = 10_000
Loader = Callable[[], Awaitable[Any | None]]


class RowCache:
    def __init__(self, ttl: float = 2.0, stale_for: float = 300.0) -> None:
        self.ttl = ttl
        self.stale_for = stale_for
        self._entries: dict[tuple[str, str], tuple[float, Any]] = {}
        self._loading: dict[tuple[str, str], asyncio.Lock] = {}

    def get(self, kind: str, key: str, max_age: float | None = None) -> Any | None:
        """The cached row, if younger than ``max_age`` (default: the cache's TTL)."""
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        stored_at, value = entry
        if time.monotonic() - stored_at > (self.ttl if max_age is None else max_age):
            return None
        return value

    def put(self, kind: str, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES and (kind, key) not in self._entries:
            # The oldest entry goes (dicts keep insertion order): with more live issuers and clients
            # than fit, clearing everything would make every request miss at once.
            del self._entries[next(iter(self._entries))]
        self._entries[(kind, key)] = (time.monotonic(), value)

    async def get_or_load(self, kind: str, key: str, load: Callable[[], Awaitable[Any | None]]) -> Any | None:
        """The cached row, or ``load()``'s; concurrent misses for one key wait for a single load
        instead of all reaching the database the moment an entry expires."""
        value = self.get(kind, key)
        if value is not None:
            return value
        lock = self._loading.setdefault((kind, key), asyncio.Lock())
        async with lock:
            value = self.get(kind, key)
            if value is None:
                value = await self._load_or_stale(kind, key, load)
        if not lock.locked():
            self._loading.pop((kind, key), None)
        return value

    async def _load_or_stale(self, kind: str, key: str, load: Loader) -> Any | None:
        try:
            value = await load()
        except Exception as exc:
            stale = self.get(kind, key, max_age=self.stale_for) if is_transient(exc) else None
            if stale is None:
                raise
            return stale
        if value is not None:
            self.put(kind, key, value)
        return value

    def invalidate(self, kind: str, key: str) -> None:
        self._entries.pop((kind, key), None)

    def clear(self) -> None:
        self._entries.clear()


rows = RowCache()
invalidation.subscribe("rows", rows.invalidate, rows.clear)
