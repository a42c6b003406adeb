"""The webhook sender: every server worker process runs one, next to housekeeping.

The outbox loop (``outbound.outbox_sender``) over ``services.webhook_deliveries``: up to
AUTHPI_WEBHOOK_CONCURRENCY attempts at once, each outcome recorded under its lease. It looks for work
when a commit of this process created deliveries (at once), when an attempt ends (the next event of
that subject may now go), and every AUTHPI_WEBHOOK_POLL_INTERVAL.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authpi.crypto.secretbox import SecretBox
from authpi.outbound import guard, webhooks
from authpi.outbound.outbox_sender import OutboxSender, Waker
from authpi.services import webhook_deliveries as outbox
from authpi.services.webhook_deliveries import Lease, Outcome
from authpi.settings import Settings
from authpi.storage.tables.events import Event
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

log = logging.getLogger("authpi.webhooks")

SENDABLE = ("active", "failing")

# The senders of this process (one per running app), woken after a commit that created deliveries.
waker = Waker(WebhookDelivery)
wake_all = waker.wake_all


class WebhookSender(OutboxSender[Lease]):
    what = "webhook deliveries"

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, settings: Settings
    ) -> None:
        super().__init__(
            sessions,
            concurrency=settings.webhook_concurrency,
            poll_interval=settings.webhook_poll_interval,
            log=log,
            waker=waker,
        )
        self._box = box
        self.timeout = settings.webhook_timeout
        self.lease_ms = int(self.timeout * 1000) + outbox.LEASE_MARGIN_MS
        self._client = guard.client(
            allow_private=settings.allow_private_networks,
            timeout=self.timeout,
            max_connections=self.concurrency * 2,
        )

    async def claim(self, session: AsyncSession, limit: int) -> list[Lease]:
        return await outbox.claim_due(session, self.owner, self.lease_ms, limit)

    async def release(self, session: AsyncSession) -> None:
        await outbox.release(session, self.owner)

    async def close(self) -> None:
        await self._client.aclose()

    def name_of(self, lease: Lease) -> str:
        return f"webhook delivery {lease.delivery_id}"

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
