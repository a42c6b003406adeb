"""The process's view of whether its database is reachable: an outage breaker and its log.

When a connection attempt or a statement fails because the database cannot be reached (see
``storage.errors.is_unavailable``), the breaker opens: every pooled-connection checkout is refused at
once with ``DatabaseUnavailable`` (answered ``503`` + ``Retry-After``) instead of each request waiting
for its own connect or statement timeout, and a background probe tries a fresh connection every
``PROBE_INTERVAL_S`` until one answers, which closes the breaker. Requests that need no database
(cached protocol paths, discovery, JWKS, health) keep being served meanwhile.

The outage is logged as one warning when it starts, one summary per ``REPORT_INTERVAL_S`` with the
number of requests refused, and one warning when the database is back: never a traceback per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from authpi.storage.errors import DatabaseUnavailable

log = logging.getLogger("authpi.database")
PROBE_INTERVAL_S = 1.0
REPORT_INTERVAL_S = 10.0

Probe = Callable[[], Awaitable[None]]


def describe(exc: BaseException) -> str:
    """One line naming the failure, without a traceback (and without connection parameters)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class DatabaseHealth:
    def __init__(self, probe: Probe | None = None) -> None:
        self.probe = probe
        self.down_since: float | None = None
        self.refused = 0  # requests answered 503 during the current outage
        self._reported_refused = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def check(self) -> None:
        """Refuse at once while the database is known to be unreachable."""
        if self.down_since is not None:
            raise DatabaseUnavailable("the database is unreachable")

    def failed(self, exc: BaseException) -> None:
        """A connection attempt or statement could not reach the database: open the breaker."""
        if self.down_since is not None or self.probe is None:
            return  # without a probe nothing could close the breaker again: never open it
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.down_since = time.monotonic()
        self.refused = self._reported_refused = 0
        log.warning("database unreachable (%s); answering 503 until it is back", describe(exc))
        self._task = loop.create_task(self._probe_until_back())

    def count_refused(self) -> None:
        self.refused += 1

    def recovered(self) -> None:
        if self.down_since is None:
            return
        elapsed = time.monotonic() - self.down_since
        self.down_since = None
        log.warning(
            "database reachable again after %.1f s; %d requests refused meanwhile", elapsed, self.refused
        )

    async def _probe_until_back(self) -> None:
        if self.probe is None:
            return
        last_report = time.monotonic()
        while self.down_since is not None:
            try:
                await self.probe()
            except Exception:  # still down: the next probe will tell
                await asyncio.sleep(PROBE_INTERVAL_S)
            else:
                self.recovered()
                return
            if time.monotonic() - last_report >= REPORT_INTERVAL_S and self.down_since is not None:
                last_report = time.monotonic()
                fresh = self.refused - self._reported_refused
                self._reported_refused = self.refused
                log.warning(
                    "database still unreachable after %.0f s; %d requests refused in the last %.0f s",
                    last_report - self.down_since,
                    fresh,
                    REPORT_INTERVAL_S,
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
