"""Self-service password reset: the rules once the user proved the mailbox (the link or code came
back). A reset password is treated as a compromised one: every session and refresh token of the
user ends, trusted devices are forgotten (the next sign-in asks for the second factor), failed
attempts counted against the old password are cleared, and the user is told by email."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, lockouts, messages, sessions, trusted_devices
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

REASON = "password_reset"


async def requested(session: AsyncSession, issuer: Issuer, user: User) -> None:
    """``user.password.reset-requested`` (only for an account: unknown identifiers leave no trace
    an administrator could mistake for a user). The caller commits."""
    await events.emit(
        session,
        "user.password.reset-requested",
        subject={"type": "user", "id": user.id},
        data={"id": user.id, "username": user.username},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
    )


async def complete(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    password_hash: str,
    *,
    notify: str | None,
    locale: str | None = None,
) -> int:
    """Give ``user`` (locked by the caller) the new password and end everything the old one
    opened; ``notify`` is the address told about it (in ``locale``, the page's language).
    Returns the sessions ended. The caller commits."""
    user.password_hash = password_hash
    user.password_changed_at = now_ms()
    await lockouts.clear(session, issuer.id, lockouts.PASSWORD, user.username_key)
    await trusted_devices.revoke_all(
        session, user.id, reason=trusted_devices.PASSWORD_CHANGED, account_id=issuer.account_id
    )
    ended = await sessions.revoke_all(session, issuer.id, user_id=user.id, reason=REASON)
    await events.emit(
        session,
        "user.password.reset",
        subject={"type": "user", "id": user.id},
        data={"id": user.id, "username": user.username, "sessions_ended": ended},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
    )
    if notify is not None:
        await messages.enqueue(
            session,
            box,
            account_id=issuer.account_id,
            issuer=issuer,
            channel="email",
            recipient=notify,
            template="password_changed",
            context={"username": user.username},
            locale=locale,
        )
    return ended
