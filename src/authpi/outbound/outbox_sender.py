"""The loop every outbox sender runs (webhook deliveries, messages), one per server worker process.

It leases due rows in small batches, attempts up to ``concurrency`` of them at once with no database
transaction open while talking to the outside world, and lets the subclass record each outcome under
its lease. It looks for work when woken (a commit of this process created rows, or an attempt ended)
and every ``poll_interval`` (retries, and rows created by other processes). At shutdown it stops
attempting and gives its leases back, so another process takes the rows at once; a process that
dies holding leases loses them when they run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Generic, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import object_session

from authpi.services import outbox
from authpi.storage.after_commit import on_commit
from authpi.storage.errors import is_transient

BATCH = 16  # rows leased per claim, at most
RELEASE_TIMEOUT_S = 5.0

LeaseT = TypeVar("LeaseT")


class Waker:
    """The running senders of one outbox in this process, woken once a transaction that wrote rows
    of its table commits (so this process's own rows go out at once, not at the next poll)."""

    def __init__(self, model: type[Any]) -> None:
        self._senders: weakref.WeakSet[OutboxSender[Any]] = weakref.WeakSet()
        sa_event.listen(model, "after_insert", self._row_created)

    def add(self, sender: OutboxSender[Any]) -> None:
        self._senders.add(sender)

    def discard(self, sender: OutboxSender[Any]) -> None:
        self._senders.discard(sender)

    def wake_all(self) -> None:
        for sender in list(self._senders):
            sender.wake()

    def _row_created(self, _mapper: Any, _connection: Any, target: Any) -> None:
        session = object_session(target)
        if session is not None:
            on_commit(session, self.wake_all)


class OutboxSender(Generic[LeaseT]):
    """Subclasses say how to claim, attempt and release; ``what`` names the rows in log lines."""

    what = "outbox rows"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        concurrency: int,
        poll_interval: float,
        log: logging.Logger,
        waker: Waker | None = None,
    ) -> None:
        self._sessions = sessions
        self._waker = waker
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.owner = outbox.new_owner()
        self.log = log
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._claims_failing = False

    # --- what a subclass provides ----------------------------------------------------------------

    async def claim(self, session: AsyncSession, limit: int) -> list[LeaseT]:
        raise NotImplementedError

    async def release(self, session: AsyncSession) -> None:
        raise NotImplementedError

    async def attempt(self, lease: LeaseT) -> object:
        raise NotImplementedError

    def name_of(self, lease: LeaseT) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        """Free what the attempts used (clients), after the last attempt."""

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._waker is not None:
            self._waker.add(self)
        self._loop_task = asyncio.create_task(self._run(), name=f"{type(self).__name__}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop attempting, then give this process's leases back."""
        if self._waker is not None:
            self._waker.discard(self)
        tasks = [task for task in (self._loop_task, *self._attempts) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.close()
        try:
            async with self._sessions() as session:
                await asyncio.wait_for(self.release(session), RELEASE_TIMEOUT_S)
        except Exception:  # they run out by themselves
            self.log.warning("could not release the %s leases", self.what, exc_info=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._attempts)
            leases: list[LeaseT] = []
            if free > 0:
                try:
                    async with self._sessions() as session:
                        leases = await self.claim(session, min(free, BATCH))
                    self._claims_failing = False
                except Exception as exc:  # the loop must survive a database outage
                    if not is_transient(exc):
                        self.log.exception("claiming %s failed", self.what)
                    elif not self._claims_failing:  # once per outage (health logs the outage itself)
                        self.log.warning("%s wait: the database is busy or unreachable", self.what)
                    self._claims_failing = True
            for lease in leases:
                task = asyncio.create_task(self._attempt(lease))
                self._attempts.add(task)
                task.add_done_callback(self._attempt_done)
            if leases and len(leases) == min(free, BATCH) and len(self._attempts) < self.concurrency:
                continue  # a full batch: there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        self._wake.set()

    async def _attempt(self, lease: LeaseT) -> None:
        try:
            await self.attempt(lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and the row is attempted again
            if is_transient(exc):
                self.log.warning("%s not recorded: the database is busy", self.name_of(lease))
            else:
                self.log.exception("%s failed unexpectedly", self.name_of(lease))
