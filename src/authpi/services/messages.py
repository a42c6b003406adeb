"""The message outbox: email and SMS written in the transaction of the change that causes them,
sent later by the message sender (``outbound.message_sender``), never lost to a crash.

``enqueue`` renders the message then (it goes out exactly as committed) and seals what it says under
the master key: codes and links are secrets. Claims, leases and backoff are the ones every outbox
shares (``services.outbox``). An email that is sent or given up on is an ``email.sent`` /
``email.failed`` event; an SMS is a log-only ``sms.sent`` / ``sms.failed`` (no catalogue type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import i18n, ids, messages
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.messages import Content
from authpi.services import events, issuer_settings, outbox
from authpi.services.errors import InvalidInput
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.messages import Message

ID_PREFIX = "msg_"
OWED = ("pending", "sending")
STATUSES = ("pending", "sending", "sent", "failed")
MAX_EMAIL_CHARS = 320
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>,;]{1,64}@[^@\s\x00-\x1f\x7f<>,;]{1,255}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_new_id = ids.MonotonicUlid(ID_PREFIX)
PLAIN_BRAND: dict[str, Any] = {
    "name": "AuthPI",
    "logo_url": None,
    "primary_color": "#3553d6",
    "background_color": "#f4f5f8",
}


def sealing_context(message_id: str) -> str:
    return f"message:{message_id}"


def content_of(message: Message, box: SecretBox) -> Content:
    return Content.of(box.open_json(message.content_sealed, sealing_context(message.id)))


def _brand(issuer: Issuer | None) -> dict[str, Any]:
    if issuer is None:
        return PLAIN_BRAND
    from authpi.oidc.pages import brand  # the hosted pages' branding, so mail looks like them

    return brand(issuer)


def _check_recipient(channel: str, recipient: str) -> None:
    if channel == "email":
        if len(recipient) > MAX_EMAIL_CHARS or not _EMAIL.match(recipient):
            raise InvalidInput.on("recipient", "invalid_email", "recipient must be one email address")
    elif channel == "sms":
        if not _PHONE.match(recipient):
            raise InvalidInput.on("recipient", "invalid_phone", "recipient must be an E.164 phone number")
    else:
        raise InvalidInput.on("channel", "invalid_value", "channel must be email or sms")


async def enqueue(
    session: AsyncSession,
    box: SecretBox,
    *,
    account_id: str,
    issuer: Issuer | None,
    channel: str,
    recipient: str,
    template: str,
    context: dict[str, Any],
    locale: str | None = None,
) -> Message:
    """Add one message to the caller's transaction (the caller commits); it goes out once that
    transaction commits, and never if it rolls back.

    ``locale`` is the language the recipient asked for (a hosted page passes the one it is shown
    in, ``pages.locale_for``); the message is written in it when a catalogue serves it (``de-AT``
    as ``de``), else in the issuer's default language, else in English. The row records the
    language used."""
    _check_recipient(channel, recipient)
    if locale is not None and not _LOCALE.match(locale):
        raise InvalidInput.on("locale", "invalid_value", "locale must be a language tag such as en or pt-BR")
    default = issuer_settings.default_locale(issuer.settings) if issuer is not None else None
    locale = i18n.choose([locale] if locale else [], None, default)
    content = messages.render(template, channel, _brand(issuer), context, locale)
    now = now_ms()
    message_id = _new_id(now)
    row = Message(
        id=message_id,
        account_id=account_id,
        issuer_id=issuer.id if issuer is not None else None,
        channel=channel,
        recipient=recipient,
        template=template,
        locale=locale,
        content_sealed=box.seal_json(content.as_dict(), sealing_context(message_id)),
        status="pending",
        attempt_count=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row


# --- the sender's side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageLease:
    message_id: str
    owner: str
    until: int
    attempt_count: int  # before this attempt


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_delay_s: float
    max_delay_s: float


def _due(now: int, channels: tuple[str, ...]) -> list[ColumnElement[bool]]:
    return [
        Message.status.in_(OWED),
        Message.channel.in_(channels),
        Message.next_attempt_at <= now,
        outbox.free(Message, now),
    ]


def _due_ids(now: int, channels: tuple[str, ...], limit: int) -> Select[Any]:
    return (
        select(Message.id)
        .where(*_due(now, channels))
        .order_by(Message.next_attempt_at, Message.id)
        .limit(limit)
    )


async def claim_due(
    session: AsyncSession, owner: str, lease_ms: int, limit: int, channels: tuple[str, ...]
) -> list[MessageLease]:
    """Lease up to ``limit`` due messages of ``channels`` for ``owner`` (status ``sending``) and
    commit; an idle poll is one plain read, never a lock."""
    now = now_ms()
    if not channels or (await session.scalar(_due_ids(now, channels, 1))) is None:
        await session.rollback()
        return []
    until = now + lease_ms
    taken = await outbox.take_leases(
        session,
        Message,
        _due_ids(now, channels, limit),
        owner=owner,
        now=now,
        until=until,
        returning=(Message.id, Message.attempt_count),
        values={"status": "sending"},
    )
    await session.commit()
    return [MessageLease(row[0], owner, until, row[1]) for row in taken]


async def release(session: AsyncSession, owner: str) -> None:
    """Give back every lease ``owner`` holds (at shutdown): the messages are due again at once."""
    await outbox.release(session, Message, owner, OWED, values={"status": "pending"})


async def load(session: AsyncSession, lease: MessageLease) -> Message | None:
    return await session.scalar(
        select(Message).where(*outbox.held(Message, lease.message_id, lease.owner, lease.until))
    )


async def record(
    session: AsyncSession, lease: MessageLease, outcome: outbox.Outcome, retry: RetryPolicy
) -> bool:
    """Record ``outcome`` if ``lease`` is still held (False otherwise: nothing is written), with
    its event when the message is done, and commit."""
    now = now_ms()
    attempts = lease.attempt_count + 1
    if outcome.success:
        status = "sent"
    elif outcome.final or attempts >= retry.max_attempts:
        status = "failed"
    else:
        status = "pending"
    written = await session.execute(
        update(Message)
        .where(*outbox.held(Message, lease.message_id, lease.owner, lease.until))
        .values(
            status=status,
            attempt_count=attempts,
            last_error=None if outcome.success else (outcome.error or "failed")[:2000],
            next_attempt_at=(
                now + outbox.backoff_ms(retry.initial_delay_s, retry.max_delay_s, attempts)
                if status == "pending"
                else None
            ),
            sent_at=now if outcome.success else None,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if written.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return False
    if status in ("sent", "failed"):
        message = await session.scalar(
            select(Message).where(Message.id == lease.message_id).execution_options(populate_existing=True)
        )
        assert message is not None
        await events.emit(
            session,
            f"{message.channel}.{status}",
            subject={"type": "message", "id": message.id},
            data=describe(message),
            account_id=message.account_id,
            issuer_id=message.issuer_id,
            trigger="system",
        )
    await session.commit()
    return True


def describe(message: Message) -> dict[str, Any]:
    """The message as its events and the CLI show it, without what it says (that is sealed)."""
    return {
        "id": message.id,
        "channel": message.channel,
        "to": message.recipient,
        "template": message.template,
        "locale": message.locale,
        "issuer_id": message.issuer_id,
        "status": message.status,
        "attempts": message.attempt_count,
        "last_error": message.last_error,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "next_attempt_at": message.next_attempt_at,
    }


# --- `authpi outbox` ---------------------------------------------------------------------------------


async def recent(session: AsyncSession, status: str | None, limit: int) -> list[Message]:
    """The newest messages first (IDs are ULIDs of their creation)."""
    query = select(Message).order_by(Message.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Message.status == status)
    return list(await session.scalars(query))


async def get(session: AsyncSession, message_id: str) -> Message | None:
    return await session.scalar(select(Message).where(Message.id == message_id))
