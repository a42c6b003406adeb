"""WebAuthn challenges kept server-side, one row per ceremony (``passkey_challenges``).

A challenge belongs to the browser that asked for it and to its pending authorization request (a
sign-in) or to none (the account portal, where the signed-in user is the ``user_id``), lives a few
minutes and is spent once: whatever the outcome of the verification, a response can never be
presented again (replays find no challenge)."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.oidc.signin.methods.passkey.ceremonies import new_challenge
from authpi.oidc.signin.steps import Step
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.passkey_challenges import PasskeyChallenge

TTL_MS = 5 * 60_000


class Bound(Protocol):
    """Whom a ceremony belongs to: a sign-in ``Flow`` or an account-portal request."""

    @property
    def issuer(self) -> Issuer: ...

    @property
    def request_id(self) -> str | None: ...

    def browser(self) -> str: ...


AUTHENTICATE = "authenticate"
REGISTER = "register"


async def begin(
    session: AsyncSession,
    flow: Bound,
    purpose: str,
    step: Step,
    *,
    user_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> PasskeyChallenge:
    """A fresh challenge for this request and browser (added; the caller commits)."""
    now = now_ms()
    row = PasskeyChallenge(
        id=ids.ulid("pkc_"),
        issuer_id=flow.issuer.id,
        request_id=flow.request_id,
        browser=flow.browser(),
        purpose=purpose,
        step=str(step),
        challenge=new_challenge(),
        user_id=user_id,
        data=data or {},
        created_at=now,
        expires_at=now + TTL_MS,
    )
    session.add(row)
    return row


async def spend(
    session: AsyncSession, flow: Bound, ceremony_id: str, purpose: str
) -> PasskeyChallenge | None:
    """The ceremony ``ceremony_id`` of this request and browser, deleted so it serves once; None
    when it is unknown, expired, someone else's or already spent (also by a concurrent request)."""
    if not ceremony_id or len(ceremony_id) > 40:
        return None
    row = await session.get(PasskeyChallenge, ceremony_id)
    if (
        row is None
        or row.issuer_id != flow.issuer.id
        or row.request_id != flow.request_id
        or row.browser != flow.browser()
        or row.purpose != purpose
    ):
        return None
    result = await session.execute(
        delete(PasskeyChallenge)
        .where(PasskeyChallenge.id == ceremony_id)
        .execution_options(synchronize_session=False)
    )
    # Detached: the row is gone once the caller commits, its values are all that is left.
    session.expunge(row)
    if result.rowcount != 1 or row.expires_at <= now_ms():  # type: ignore[attr-defined]
        return None
    return row
