"""Sending a one-time code or link from a hosted page: the steps every method that mails or texts
one takes, in the same order whether or not an account stands behind the identifier.

1. The resend cooldown (``AUTHPI_CODE_RESEND_COOLDOWN``): a code sent moments ago for the same
   purpose and person stands; no new one is sent.
2. The send limits per recipient, client IP and issuer (``services.send_limits``): past one, a 429
   page and nothing sent.
3. A code row is issued either way: for an unknown identifier (or an account without an address on
   this channel) it is a decoy nobody receives, so the pages that follow, the cooldown and the
   lockout behave exactly as for a real account, and no page tells the two apart.
4. Only a real recipient gets a message, through the outbox, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.pages import locale_for, message, record_rate_limit
from authpi.runtime import Runtime
from authpi.services import messages, send_limits
from authpi.services import one_time_codes as otc
from authpi.services.errors import RateLimited
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.one_time_codes import OneTimeCode
from authpi.storage.tables.users import User

TOO_MANY_SENT = _l("Too many codes were sent. Wait a while and try again.")


def recipient_of(user: User | None, channel: str) -> str | None:
    """Where ``user`` receives messages on ``channel``: the username when it is an address of that
    kind, else a verified address of the profile; None when there is none."""
    if user is None or user.status != "active":
        return None
    profile = user.profile or {}
    if channel == "email":
        if user.username_type == "email":
            return user.username
        email = profile.get("email")
        return email if isinstance(email, str) and profile.get("email_verified") is True else None
    if user.username_type == "phone":
        return user.username
    phone = profile.get("phone_number")
    return phone if isinstance(phone, str) and profile.get("phone_number_verified") is True else None


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Sent:
    """The code the page continues with, and whether it was held back by the cooldown."""

    row: OneTimeCode | None  # None: a cooldown held back a code asked for elsewhere
    wait_s: int = 0  # > 0: no new code was sent; another may be asked for in this many seconds
    issued: otc.Issued | None = None


async def send(
    request: Request,
    rt: Runtime,
    session: AsyncSession,
    issuer: Issuer,
    *,
    purpose: str,
    channel: str,
    key: str,
    user: User | None,
    template: str,
    context: Callable[[otc.Issued], dict[str, Any]],
    ttl_ms: int,
    request_id: str | None = None,
    browser: str | None = None,
    code: bool = True,
    link: bool = False,
    data: dict[str, Any] | None = None,
    to: str | None = None,
) -> Sent | Response:
    """Send a code (and/or link) for ``purpose`` to ``user`` over ``channel`` (or, with no account
    yet, to the address ``to``, e.g. at sign-up); ``key`` is the identifier's login key, which
    stands for the person when no account does. Commits. Returns the row the next page continues
    with, or the 429 page past a send limit."""
    recipient = to if to is not None else recipient_of(user, channel)
    owner = {"user_id": user.id} if user is not None else {"recipient": key}
    newest = await otc.latest(session, issuer_id=issuer.id, purpose=purpose, **owner)
    wait_ms = otc.cooldown_left_ms(newest, rt.settings.code_resend_cooldown)
    if wait_ms > 0 and newest is not None:
        mine = newest.request_id == request_id and newest.browser == browser
        return Sent(newest if mine else None, -(-wait_ms // 1000))
    try:
        await send_limits.check(
            rt.rate_limits,
            issuer_id=issuer.id,
            channel=channel,
            recipient=recipient or key,
            client_ip=client_ip(request),
        )
    except RateLimited as exc:
        if exc.first:
            await record_rate_limit(rt, issuer, f"send_{channel}", exc.retry_after)
        response = message(request, rt, issuer, _l("Too many attempts"), TOO_MANY_SENT, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    issued = await otc.issue(
        session,
        rt.secretbox,
        issuer_id=issuer.id,
        purpose=purpose,
        channel=channel,
        recipient=recipient or key,
        user_id=user.id if user is not None else None,
        request_id=request_id,
        browser=browser,
        ttl_ms=ttl_ms,
        code=code,
        link=link,
        data={"key": key, **(data or {})},
    )
    if recipient is not None:
        await messages.enqueue(
            session,
            rt.secretbox,
            account_id=issuer.account_id,
            issuer=issuer,
            channel=channel,
            recipient=recipient,
            template=template,
            context=context(issued),
            locale=locale_for(request, issuer),  # the language of the page that asked
        )
    await session.commit()
    return Sent(issued.row, 0, issued)
