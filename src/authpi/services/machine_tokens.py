"""``machine.token.issued`` through a bounded, batched writer.

The client_credentials grant serves from cached rows and keys with no database work (its speed,
and tokens through a database outage), so it cannot write an event per token in its request.
Instead it hands a small record (who asked, from where, for what, until when; never the token)
to this worker's in-memory queue, which never blocks and never fails the request. A background
task writes what is queued every ``AUTHPI_EVENT_FLUSH_INTERVAL`` seconds, or as soon as
``BATCH`` records wait, each batch in ONE transaction through ``events.emit`` (so whatever
``emit`` does for every event, it does for these). Past ``AUTHPI_EVENT_BUFFER`` queued records
the newest are dropped, counted (``authpi_events_dropped_total``) and warned about at most once
every ``WARN_EVERY_S``; the queue is written out when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authpi.clock import now_ms
from authpi.observability import metrics, request_id
from authpi.services import events

log = logging.getLogger("authpi.events")

EVENT_TYPE = "machine.token.issued"
BATCH = 500  # records per transaction, and the queue length that triggers a write at once
WARN_EVERY_S = 10.0
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What the event says about one client_credentials token (the token itself is never kept)."""

    account_id: str
    issuer_id: str
    client_id: str
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    expires_at: int  # ms
    issued_at: int  # ms
    actor: events.Actor
    trace: str | None

    @classmethod
    def now(
        cls,
        *,
        account_id: str,
        issuer_id: str,
        client_id: str,
        scopes: Sequence[str],
        audience: str | Sequence[str],
        ttl: int,
    ) -> IssuedToken:
        """A record of a token issued now, by the current request's actor and trace."""
        at = now_ms()
        return cls(
            account_id=account_id,
            issuer_id=issuer_id,
            client_id=client_id,
            scopes=tuple(scopes),
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            expires_at=at + ttl * 1000,
            issued_at=at,
            actor=events.current_actor(),
            trace=request_id.current.get(),
        )


class MachineTokenLog:
    """This worker's queue of issued machine tokens and the task that writes them as events."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], bound: int, interval: float, batch: int = BATCH
    ) -> None:
        self._sessions = sessions
        self.bound = bound  # 0: machine tokens are not recorded at all
        self.interval = interval
        self.batch = batch
        self._queue: deque[IssuedToken] = deque()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropped_since_warning = 0
        self._last_warning = 0.0
        self._writing = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._queue)

    # --- the request side: O(1), never blocks, never raises -----------------------------------

    def record(self, token: IssuedToken) -> None:
        if self.bound <= 0:
            return
        if len(self._queue) >= self.bound:
            self._drop(1)
            return
        self._queue.append(token)
        if len(self._queue) >= self.batch:
            self._full.set()

    def _drop(self, count: int) -> None:
        metrics.count_dropped_events(EVENT_TYPE, count)
        self._dropped_since_warning += count
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            log.warning(
                "event buffer full: dropped %d %s event(s) (AUTHPI_EVENT_BUFFER=%d)",
                self._dropped_since_warning,
                EVENT_TYPE,
                self.bound,
            )
            self._last_warning = now
            self._dropped_since_warning = 0

    # --- the writer ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.bound > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="machine-token-events")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.interval)
            self._full.clear()
            try:
                await self.flush()
            except Exception:  # the writer must outlive any one failure; flush already logged it
                log.exception("writing machine token events failed")

    async def flush(self) -> int:
        """Write everything queued now, ``batch`` records per transaction; returns how many were
        written. A batch that fails goes back to the head of the queue (within the bound) for the
        next try, so a database outage loses only what overflows."""
        written = 0
        async with self._writing:
            while self._queue:
                taken = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                try:
                    await self._write(taken)
                except Exception as exc:
                    self._requeue(taken)
                    log.warning("could not write %d %s event(s), will retry: %s", len(taken), EVENT_TYPE, exc)
                    break
                written += len(taken)
        return written

    def _requeue(self, taken: list[IssuedToken]) -> None:
        self._queue.extendleft(reversed(taken))
        overflow = len(self._queue) - self.bound
        if overflow > 0:  # keep the oldest, as ``record`` does
            for _ in range(overflow):
                self._queue.pop()
            self._drop(overflow)

    async def _write(self, batch: list[IssuedToken]) -> None:
        async with self._sessions() as session:
            for token in batch:
                await events.emit(
                    session,
                    EVENT_TYPE,
                    subject={"type": "client", "id": token.client_id},
                    data={
                        "grant_type": "client_credentials",
                        "scopes": list(token.scopes),
                        "audience": list(token.audience),
                        "issued_at": token.issued_at,
                        "expires_at": token.expires_at,
                    },
                    account_id=token.account_id,
                    issuer_id=token.issuer_id,
                    client_id=token.client_id,
                    actor=token.actor,
                    trace=token.trace,
                    at=token.issued_at,
                    batched=True,
                )
            await session.commit()

    async def close(self) -> None:
        """Stop the writer and write out what is still queued (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._queue:
            return
        try:
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT_S)
        except Exception:
            log.warning("could not write out the machine token events at shutdown", exc_info=True)
        if self._queue:
            log.warning("%d %s event(s) were not written before shutdown", len(self._queue), EVENT_TYPE)
