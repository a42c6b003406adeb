"""One-time codes and links sent by email or SMS: sign-in codes, magic links, password reset,
verification of an address. One table and one set of rules for every purpose.

- A code is 6 random digits, stored as an HMAC keyed from the master key and bound to the row's
  ID, so a stolen database cannot be searched through the million possible codes offline. A link
  token is 32 random bytes, stored as its SHA-256 (plenty of entropy, no key needed).
- Every check of a code is counted by one ``UPDATE … SET attempts = attempts + 1 … WHERE attempts <
  max RETURNING`` *before* the comparison and committed at once: concurrent guesses each take their
  own number, and no more than ``max_attempts`` guesses are ever compared, however many arrive at
  once.
- A right code (or a link) is spent by ``UPDATE … SET consumed_at … WHERE consumed_at IS NULL``,
  which answers once: two requests presenting it together succeed once.
- Issuing a code ends the earlier unconsumed ones of the same purpose for the same person (they
  expire at that moment): only the newest code sent works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.crypto.secretbox import SecretBox
from authpi.storage.tables.one_time_codes import OneTimeCode

ID_PREFIX = "otc_"
CODE_DIGITS = 6
LINK_BYTES = 32
MAX_CODE_CHARS = 16  # longer input is refused unread (with separators stripped, a code is 6 digits)
MAX_TOKEN_CHARS = 128
CHANNELS = ("email", "sms")

# Purposes in use (a plain string column: a new purpose needs no migration).
SIGN_IN = "sign_in"
PASSWORD_RESET = "password_reset"
VERIFY_EMAIL = "verify_email"
VERIFY_PHONE = "verify_phone"
CHANGE_EMAIL = "change_email"
CHANGE_PHONE = "change_phone"

CodeError = Literal["wrong", "expired", "used", "too_many"]
LinkError = Literal["wrong", "expired", "used", "other_browser"]

_new_id = ids.MonotonicUlid(ID_PREFIX)


@dataclass(frozen=True)
class Issued:
    row: OneTimeCode
    code: str | None  # what to send; never stored
    link_token: str | None


@dataclass(frozen=True)
class CodeCheck:
    success: bool
    error: CodeError | None = None
    row: OneTimeCode | None = None


@dataclass(frozen=True)
class LinkCheck:
    success: bool
    error: LinkError | None = None
    row: OneTimeCode | None = None


def _code_key(box: SecretBox) -> bytes:
    return box.derive("one-time-code")


def code_hash(box: SecretBox, code_id: str, code: str) -> str:
    """HMAC of the code bound to its row: the same code in another row hashes differently."""
    return hmac.new(_code_key(box), f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def link_hash(token: str) -> str:
    return hashing.digest(token)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalize_code(presented: str) -> str | None:
    """The digits a person typed (spaces and dashes allowed between them); None if it cannot be a
    code, which then counts as a wrong guess like any other."""
    if len(presented) > MAX_CODE_CHARS:
        return None
    digits = "".join(ch for ch in presented if ch not in " -\t")
    if len(digits) != CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def _same_person(issuer_id: str, purpose: str, user_id: str | None, recipient: str | None) -> list[Any]:
    where: list[Any] = [OneTimeCode.issuer_id == issuer_id, OneTimeCode.purpose == purpose]
    if user_id is not None:
        where.append(OneTimeCode.user_id == user_id)
    elif recipient is not None:
        where.append(OneTimeCode.recipient == recipient)
    else:
        raise ValueError("a user_id or a recipient is needed")
    return where


async def issue(
    session: AsyncSession,
    box: SecretBox,
    *,
    issuer_id: str,
    purpose: str,
    channel: str,
    recipient: str,
    user_id: str | None = None,
    request_id: str | None = None,
    browser: str | None = None,
    ttl_ms: int,
    code: bool = True,
    link: bool = False,
    data: dict[str, Any] | None = None,
) -> Issued:
    """A new code and/or link for ``purpose`` (added to the caller's transaction; the caller sends
    it through the outbox in the same transaction and commits). Earlier unconsumed codes of this
    purpose for the same user (or, without one, the same recipient) stop working now."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if not (code or link):
        raise ValueError("a one-time code needs a code, a link or both")
    now = now_ms()
    await session.execute(
        update(OneTimeCode)
        .where(
            *_same_person(issuer_id, purpose, user_id, recipient),
            OneTimeCode.consumed_at.is_(None),
            OneTimeCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    code_id = _new_id(now)
    plain_code = new_code() if code else None
    token = secrets.token_urlsafe(LINK_BYTES) if link else None
    row = OneTimeCode(
        id=code_id,
        issuer_id=issuer_id,
        user_id=user_id,
        purpose=purpose,
        channel=channel,
        recipient=recipient,
        request_id=request_id,
        browser=browser,
        code_hash=code_hash(box, code_id, plain_code) if plain_code is not None else None,
        link_hash=link_hash(token) if token is not None else None,
        attempts=0,
        data=dict(data or {}),
        created_at=now,
        expires_at=now + ttl_ms,
        consumed_at=None,
    )
    session.add(row)
    await session.flush()
    return Issued(row, plain_code, token)


async def get(session: AsyncSession, code_id: str) -> OneTimeCode | None:
    return await session.scalar(
        select(OneTimeCode).where(OneTimeCode.id == code_id).execution_options(populate_existing=True)
    )


def _refusal(row: OneTimeCode | None, now: int, max_attempts: int) -> CodeError:
    if row is None:
        return "wrong"
    if row.consumed_at is not None:
        return "used"
    if row.expires_at <= now:
        return "expired"
    if row.attempts >= max_attempts:
        return "too_many"
    return "wrong"  # no code on this row (a link only)


async def check_code(
    session: AsyncSession,
    box: SecretBox,
    *,
    code_id: str,
    code: str,
    max_attempts: int = 5,
    commit: bool = True,
) -> CodeCheck:
    """Check ``code`` against the code ``code_id``, spending it when right.

    The attempt is counted and committed before the comparison (the caller's transaction is
    committed with it: call this first). With ``commit=False`` the consumption of a right code is
    left to the caller's transaction, so it commits (or rolls back) with what the code allows."""
    now = now_ms()
    table: Table = OneTimeCode.__table__  # type: ignore[assignment]
    counted = (
        await session.execute(
            update(table)
            .where(
                table.c.id == code_id,
                table.c.consumed_at.is_(None),
                table.c.expires_at > now,
                table.c.attempts < max_attempts,
                table.c.code_hash.is_not(None),
            )
            .values(attempts=table.c.attempts + 1)
            .returning(table.c.code_hash)
        )
    ).first()
    await session.commit()
    if counted is None:
        row = await get(session, code_id)
        return CodeCheck(False, _refusal(row, now, max_attempts), row)
    digits = normalize_code(code)
    presented = code_hash(box, code_id, digits if digits is not None else "-")
    if not hmac.compare_digest(presented, counted[0]):
        row = await get(session, code_id)
        return CodeCheck(False, "wrong", row)
    spent = await session.execute(
        update(table).where(table.c.id == code_id, table.c.consumed_at.is_(None)).values(consumed_at=now_ms())
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return CodeCheck(False, "used", await get(session, code_id))
    if commit:
        await session.commit()
    return CodeCheck(True, None, await get(session, code_id))


async def find_link(session: AsyncSession, *, issuer_id: str, token: str, purpose: str) -> OneTimeCode | None:
    """The row of a link token (spent or not), without spending it: what a landing page shows."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return await session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.link_hash == link_hash(token),
            OneTimeCode.issuer_id == issuer_id,
            OneTimeCode.purpose == purpose,
        )
        .execution_options(populate_existing=True)
    )


async def redeem_link(
    session: AsyncSession,
    *,
    issuer_id: str,
    token: str,
    purpose: str,
    browser: str | None = None,
    commit: bool = True,
) -> LinkCheck:
    """Spend the link ``token`` (once, however many requests present it together).

    With ``browser`` given, a link bound to another browser is refused as ``other_browser`` and
    left unspent (the caller asks that browser's owner to confirm instead)."""
    row = await find_link(session, issuer_id=issuer_id, token=token, purpose=purpose)
    now = now_ms()
    if row is None:
        return LinkCheck(False, "wrong", None)
    if row.consumed_at is not None:
        return LinkCheck(False, "used", row)
    if row.expires_at <= now:
        return LinkCheck(False, "expired", row)
    if browser is not None and row.browser is not None and not hmac.compare_digest(browser, row.browser):
        return LinkCheck(False, "other_browser", row)
    table: Table = OneTimeCode.__table__  # type: ignore[assignment]
    row_id = row.id  # a rollback below expires the loaded row
    spent = await session.execute(
        update(table)
        .where(table.c.id == row_id, table.c.consumed_at.is_(None), table.c.expires_at > now)
        .values(consumed_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        lost = await get(session, row_id)
        used = lost is not None and lost.consumed_at is not None
        return LinkCheck(False, "used" if used else "expired", lost)
    if commit:
        await session.commit()
    return LinkCheck(True, None, await get(session, row_id))


async def latest(
    session: AsyncSession,
    *,
    issuer_id: str,
    purpose: str,
    user_id: str | None = None,
    recipient: str | None = None,
) -> OneTimeCode | None:
    """The newest code of ``purpose`` for the user (or the recipient): the resend cooldown runs
    from its ``created_at``."""
    return await session.scalar(
        select(OneTimeCode)
        .where(*_same_person(issuer_id, purpose, user_id, recipient))
        .order_by(OneTimeCode.id.desc())
        .limit(1)
    )


def cooldown_left_ms(row: OneTimeCode | None, cooldown_s: float) -> int:
    """Milliseconds before another code may be sent after ``row`` (0: now)."""
    if row is None:
        return 0
    return max(0, row.created_at + int(cooldown_s * 1000) - now_ms())
