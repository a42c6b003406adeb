"""A small process-local cache of configuration rows (issuers, clients) read on every protocol
request. Entries live a few seconds (``AUTHPI_CONFIG_CACHE_SECONDS``); a write through the Core API
evicts the entry in its own process at once, so other workers see a change within that window."""

from __future__ import annotations

import time
from typing import Any

MAX_ENTRIES = 10_000


class RowCache:
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, Any]] = {}

    def get(self, kind: str, key: str) -> Any | None:
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        stored_at, value = entry
        if time.monotonic() - stored_at > self.ttl:
            self._entries.pop((kind, key), None)
            return None
        return value

    def put(self, kind: str, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()  # rare; keeps memory bounded without bookkeeping
        self._entries[(kind, key)] = (time.monotonic(), value)

    def invalidate(self, kind: str, key: str) -> None:
        self._entries.pop((kind, key), None)


rows = RowCache()
