"""The message sender: every server worker process runs one next to the webhook sender, when email
(AUTHPI_SMTP_URL) or SMS (AUTHPI_SMS_WEBHOOK_URL) is configured.

The outbox loop (``outbound.outbox_sender``) over ``services.messages``: it claims only messages of
the configured channels (the others stay pending, for ``authpi outbox``), sends each with no database
transaction open, and records the outcome under its lease. A kill -9 between the send and the record
loses nothing: the lease runs out and the message is sent again (at most one extra copy).
"""

from __future__ import annotations

import logging

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authpi.crypto.secretbox import SecretBox
from authpi.messages import Content
from authpi.outbound import smtp
from authpi.outbound.outbox_sender import OutboxSender, Waker
from authpi.outbound.sms import SmsProvider, WebhookSmsProvider
from authpi.services import messages, outbox
from authpi.services.messages import MessageLease, RetryPolicy
from authpi.services.outbox import Outcome
from authpi.settings import Settings
from authpi.storage.tables.messages import Message

log = logging.getLogger("authpi.messages")

CONCURRENCY = 4

waker = Waker(Message)
wake_all = waker.wake_all


def channels(settings: Settings) -> tuple[str, ...]:
    """The channels this server can send; messages of the others stay in the outbox."""
    return tuple(
        channel
        for channel, configured in (("email", settings.smtp_url), ("sms", settings.sms_webhook_url))
        if configured
    )


def unconfigured_warnings(settings: Settings) -> list[str]:
    found = channels(settings)
    out = []
    if "email" not in found:
        out.append(
            "AUTHPI_SMTP_URL is not set: email is not sent, it stays in the outbox "
            "(`authpi outbox list`, `authpi outbox show ID`; development only)"
        )
    if "sms" not in found:
        out.append(
            "AUTHPI_SMS_WEBHOOK_URL is not set: SMS are not sent, they stay in the outbox "
            "(`authpi outbox list`, `authpi outbox show ID`; development only)"
        )
    return out


class MessageSender(OutboxSender[MessageLease]):
    what = "messages"

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, settings: Settings
    ) -> None:
        super().__init__(
            sessions,
            concurrency=CONCURRENCY,
            poll_interval=settings.message_poll_interval,
            log=log,
            waker=waker,
        )
        self._box = box
        self.channels = channels(settings)
        self.timeout = settings.message_timeout
        self.lease_ms = int(self.timeout * 1000) + outbox.LEASE_MARGIN_MS
        self.retry = RetryPolicy(
            settings.message_max_attempts, settings.message_retry_delay, settings.message_retry_max_delay
        )
        self._smtp = smtp.parse_url(settings.smtp_url) if settings.smtp_url else None
        self._from = settings.email_from or ""
        self._sms: SmsProvider | None = None
        if settings.sms_webhook_url and settings.sms_webhook_secret:
            self._sms = WebhookSmsProvider(
                settings.sms_webhook_url,
                settings.sms_webhook_secret,
                allow_private=settings.allow_private_networks,
                timeout=self.timeout,
            )

    async def claim(self, session: AsyncSession, limit: int) -> list[MessageLease]:
        return await messages.claim_due(session, self.owner, self.lease_ms, limit, self.channels)

    async def release(self, session: AsyncSession) -> None:
        await messages.release(session, self.owner)

    async def close(self) -> None:
        if self._sms is not None:
            await self._sms.close()

    def name_of(self, lease: MessageLease) -> str:
        return f"message {lease.message_id}"

    async def attempt(self, lease: MessageLease) -> Outcome | None:
        async with self._sessions() as session:
            message = await messages.load(session, lease)
            if message is None:  # the lease was lost already
                return None
            content = messages.content_of(message, self._box)
            channel, recipient, language = message.channel, message.recipient, message.locale
        if channel == "email":
            outcome = await self._send_email(lease.message_id, recipient, content, language)
        else:
            outcome = await self._send_sms(lease.message_id, recipient, content.text)
        async with self._sessions() as session:
            recorded = await messages.record(session, lease, outcome, self.retry)
        if not recorded:
            log.warning("message %s: lease lost before its outcome was recorded", lease.message_id)
            return None
        if not outcome.success:
            log.warning(
                "message %s (%s) attempt %d failed: %s",
                lease.message_id,
                channel,
                lease.attempt_count + 1,
                outcome.error,
            )
        return outcome

    async def _send_email(
        self, message_id: str, recipient: str, content: Content, language: str | None = None
    ) -> Outcome:
        if self._smtp is None:
            return Outcome(success=False, error="email is not configured")
        try:
            await smtp.send(
                self._smtp, smtp.compose(self._from, recipient, content, message_id, language), self.timeout
            )
        except smtp.SmtpRefused as exc:
            return Outcome(success=False, status=None, error=str(exc)[:500], final=exc.permanent)
        except TimeoutError:
            return Outcome(success=False, error=f"timed out after {self.timeout:g} s")
        except (aiosmtplib.SMTPException, OSError) as exc:
            detail = str(exc).strip()
            return Outcome(success=False, error=f"{type(exc).__name__}: {detail}"[:500])
        return Outcome(success=True)

    async def _send_sms(self, message_id: str, recipient: str, text: str) -> Outcome:
        if self._sms is None:
            return Outcome(success=False, error="SMS is not configured")
        return await self._sms.send(message_id, recipient, text)
