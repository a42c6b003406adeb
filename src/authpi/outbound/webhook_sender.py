"""The webhook sender: every server worker process runs one, next to housekeeping.

It leases due deliveries in small batches (``services.webhook_deliveries``), attempts up to
AUTHPI_WEBHOOK_CONCURRENCY of them at once with no database transaction open during a request, and
records each outcome under its lease. It looks for work when a commit of this process created
deliveries (at once), when an attempt ends (the next event of that subject may now go), and every
AUTHPI_WEBHOOK_POLL_INTERVAL (retries, and deliveries created by other processes). At shutdown it
stops attempting and gives its leases back, so another process takes the deliveries at once; a
process that dies holding leases loses them when they run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import object_session

from authpi.crypto.secretbox import SecretBox
from authpi.outbound import guard, webhooks
from authpi.services import webhook_deliveries as outbox
from authpi.services.webhook_deliveries import Lease, Outcome
from authpi.settings import Settings
from authpi.storage.after_commit import on_commit
from authpi.storage.errors import is_transient
from authpi.storage.tables.events import Event
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

log = logging.getLogger("authpi.webhooks")

BATCH = 16  # deliveries leased per claim, at most
RELEASE_TIMEOUT_S = 5.0
SENDABLE = ("active", "failing")

# The senders of this process (one per running app), woken after a commit that created deliveries.
_senders: weakref.WeakSet[WebhookSender] = weakref.WeakSet()


def wake_all() -> None:
    for sender in list(_senders):
        sender.wake()


@sa_event.listens_for(WebhookDelivery, "after_insert")
def _delivery_created(_mapper: Any, _connection: Any, target: WebhookDelivery) -> None:
    session = object_session(target)
    if session is not None:
        on_commit(session, wake_all)


class WebhookSender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._box = box
        self.timeout = settings.webhook_timeout
        self.concurrency = settings.webhook_concurrency
        self.poll_interval = settings.webhook_poll_interval
        self.lease_ms = int(self.timeout * 1000) + outbox.LEASE_MARGIN_MS
        self.owner = outbox.new_owner()
        self._client = guard.client(
            allow_private=settings.allow_private_networks,
            timeout=self.timeout,
            max_connections=self.concurrency * 2,
        )
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._claims_failing = False

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        _senders.add(self)
        self._loop_task = asyncio.create_task(self._run(), name="webhook-sender")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop attempting, then give this process's leases back."""
        _senders.discard(self)
        tasks = [task for task in (self._loop_task, *self._attempts) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.aclose()
        try:
            async with self._sessions() as session:
                await asyncio.wait_for(outbox.release(session, self.owner), RELEASE_TIMEOUT_S)
        except Exception:  # they run out by themselves
            log.warning("could not release the webhook delivery leases", exc_info=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._attempts)
            leases: list[Lease] = []
            if free > 0:
                try:
                    async with self._sessions() as session:
                        leases = await outbox.claim_due(session, self.owner, self.lease_ms, min(free, BATCH))
                    self._claims_failing = False
                except Exception as exc:  # the loop must survive a database outage
                    if not is_transient(exc):
                        log.exception("claiming webhook deliveries failed")
                    elif not self._claims_failing:  # once per outage (health logs the outage itself)
                        log.warning("webhook deliveries wait: the database is busy or unreachable")
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

    # --- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, lease: Lease) -> None:
        try:
            await self.attempt(lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and the delivery is attempted again
            if is_transient(exc):
                log.warning("webhook delivery %s not recorded: the database is busy", lease.delivery_id)
            else:
                log.exception("webhook delivery %s failed unexpectedly", lease.delivery_id)

    async def attempt(self, lease: Lease) -> Outcome | None:
        """Attempt the leased delivery and record its outcome (None: not attempted, or the lease
        was lost meanwhile and the outcome not recorded)."""
        async with self._sessions() as session:
            webhook = await session.scalar(select(Webhook).where(Webhook.id == lease.webhook_id))
            event = await session.scalar(select(Event).where(Event.id == lease.event_id))
            if webhook is None or (webhook.status not in SENDABLE and not lease.manual):
                await outbox.drop_lease(session, lease)
                return None
        if event is None:
            outcome = Outcome(success=False, error="the event no longer exists (retention)", final=True)
        else:
            outcome = await webhooks.send(self._client, webhook, event, self._box, self.timeout)
        async with self._sessions() as session:
            recorded = await outbox.record(session, lease, webhook, outcome)
        if not recorded:
            log.warning("webhook delivery %s: lease lost before its outcome was recorded", lease.delivery_id)
            return None
        return outcome
