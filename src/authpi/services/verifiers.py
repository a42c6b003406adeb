"""A user's verifiers (§C.7): TOTP enrollment and checks, backup codes, and the rules every
verifier shares (listing, renaming, deleting). Used by the Core API and by the hosted sign-in pages.

* A TOTP verifier starts ``pending`` with its secret sealed under the master key; the first code
  confirms it. A code is accepted within ±1 time step, and each step at most once: using it is an
  ``UPDATE … WHERE last_used_step < :step`` the database decides, so a code sent twice (even at once)
  succeeds once.
* Backup codes (10 by default) are random, shown once and stored as keyed digests under one
  ``backup_codes`` verifier; spending one is an ``UPDATE … WHERE used_at IS NULL``. They are created
  with the user's first second factor and replaced as a whole by ``regenerate``.
* Every check is counted by the credential lockout first (decision 20, kinds ``totp`` and
  ``backup_code`` per user), in the Core API's ``verify`` as at sign-in.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, lockouts, totp, versions
from authpi.services.auth_method_types import TYPES
from authpi.services.errors import Conflict, NotFound, ServiceError, check_etag
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import BackupCode, Verifier

TOTP = "totp"
BACKUP_CODES = "backup_codes"
PASSKEY = "passkey"
# Types that are a second factor on their own (backup codes are only a fallback for them).
SECOND_FACTORS = (TOTP, PASSKEY)
ENROLLMENT_TTL_MS = 10 * 60 * 1000
MAX_PER_USER = 20
LOW_BACKUP_CODES = 2
MAX_CODE_LENGTH = 64
# Backup codes: 12 characters of 31 without look-alikes (i, l, o, 0, 1): 59 bits, as xxxx-xxxx-xxxx.
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
WHAT = "Verifier"

# Answers of a check, as the Core API's ``error`` field and the sign-in pages say them.
INVALID_CODE = "invalid_code"
LOCKED = "locked"
EXPIRED = "enrollment_expired"


class NotVerifiable(ServiceError):
    """The verifier has no code to check (a passkey, the password)."""


@dataclass(frozen=True)
class Enrollment:
    verifier: Verifier
    secret: str
    provisioning_uri: str


@dataclass(frozen=True)
class Check:
    """The outcome of one code: ``error`` is INVALID_CODE, LOCKED or EXPIRED when it failed."""

    success: bool
    error: str | None = None
    verifier: Verifier | None = None
    remaining: int | None = None  # backup codes left, after a backup-code check
    locked_for_ms: int = 0
    backup_codes: list[str] | None = None  # the first second factor's new backup codes, once


# --- reading ----------------------------------------------------------------------------------------


def _live(now: int) -> Any:
    """Active verifiers, and pending enrollments that have not expired."""
    return (Verifier.status == "active") | (Verifier.expires_at > now)


async def list_for_user(session: AsyncSession, user_id: str) -> Sequence[Verifier]:
    stmt = select(Verifier).where(Verifier.user_id == user_id, _live(now_ms())).order_by(Verifier.id)
    return (await session.scalars(stmt)).all()


async def get(session: AsyncSession, user_id: str, verifier_id: str, *, for_update: bool = False) -> Verifier:
    stmt = select(Verifier).where(Verifier.id == verifier_id, Verifier.user_id == user_id, _live(now_ms()))
    if for_update:
        stmt = versions.for_update(stmt)
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(WHAT)
    return row


async def active_of_type(session: AsyncSession, user_id: str, type_: str) -> Sequence[Verifier]:
    stmt = select(Verifier).where(
        Verifier.user_id == user_id, Verifier.type == type_, Verifier.status == "active"
    )
    return (await session.scalars(stmt.order_by(Verifier.primary.desc(), Verifier.id))).all()


async def has_second_factor(session: AsyncSession, user_id: str) -> bool:
    found = await session.scalar(
        select(func.count())
        .select_from(Verifier)
        .where(Verifier.user_id == user_id, Verifier.type.in_(SECOND_FACTORS), Verifier.status == "active")
    )
    return bool(found)


async def remaining_codes(session: AsyncSession, verifier_ids: Sequence[str]) -> dict[str, int]:
    """Unused backup codes per verifier."""
    if not verifier_ids:
        return {}
    rows = await session.execute(
        select(BackupCode.verifier_id, func.count())
        .where(BackupCode.verifier_id.in_(verifier_ids), BackupCode.used_at.is_(None))
        .group_by(BackupCode.verifier_id)
    )
    counts = {verifier_id: int(count) for verifier_id, count in rows.all()}
    return {verifier_id: counts.get(verifier_id, 0) for verifier_id in verifier_ids}


async def method_settings(session: AsyncSession, issuer_id: str, type_: str) -> dict[str, Any]:
    """The issuer's settings of the ``type_`` auth method over its defaults (defaults without one)."""
    row = await session.scalar(
        select(AuthMethod).where(AuthMethod.issuer_id == issuer_id, AuthMethod.method == type_)
    )
    return {**TYPES[type_].defaults, **(row.settings if row else {})}


def brand_name(issuer: Issuer) -> str:
    branding = issuer.settings.get("branding") or {}
    name = branding.get("name")
    return name if isinstance(name, str) and name.strip() else issuer.name


# --- events -----------------------------------------------------------------------------------------


def _public(row: Verifier) -> dict[str, Any]:
    """What an event may say about a verifier: never its secret, codes or key material."""
    return {"id": row.id, "type": row.type, "name": row.name, "status": row.status}


async def _emit(
    session: AsyncSession, type_: str, issuer: Issuer, user_id: str, row: Verifier, **data: Any
) -> None:
    await events.emit(
        session,
        type_,
        subject={"type": "verifier", "id": row.id},
        data={**_public(row), **data},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user_id,
    )


# --- TOTP -------------------------------------------------------------------------------------------


def _secret_context(verifier_id: str) -> str:
    # Binds the sealed secret to its row: a ciphertext copied onto another verifier does not open.
    return f"verifier:{verifier_id}:totp"


def _parameters(row: Verifier) -> totp.Parameters:
    meta = row.metadata_ or {}
    return totp.Parameters(
        int(meta.get("digits", totp.DEFAULT_DIGITS)), int(meta.get("period", totp.DEFAULT_PERIOD))
    )


async def _make_room(session: AsyncSession, user_id: str) -> None:
    """Forget the user's expired enrollments, then refuse a verifier beyond the cap."""
    await session.execute(
        delete(Verifier).where(
            Verifier.user_id == user_id, Verifier.status == "pending", Verifier.expires_at <= now_ms()
        )
    )
    count = await session.scalar(
        select(func.count()).select_from(Verifier).where(Verifier.user_id == user_id)
    )
    if int(count or 0) >= MAX_PER_USER:
        raise Conflict(f"A user can have at most {MAX_PER_USER} verifiers; delete one first")


async def start_totp(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    *,
    name: str | None = None,
    origin: str = "api",
) -> Enrollment:
    """A pending TOTP verifier, its secret (returned this once) and its ``otpauth://`` URI.

    ``origin`` says who started it (the Core API, or the sign-in pages, which reuse theirs)."""
    await _make_room(session, user.id)
    settings = await method_settings(session, issuer.id, TOTP)
    params = totp.Parameters(int(settings["digits"]), int(settings["period"]))
    now = now_ms()
    secret = totp.new_secret()
    verifier_id = ids.ulid("vrf_", now)
    row = Verifier(
        id=verifier_id,
        issuer_id=issuer.id,
        user_id=user.id,
        type=TOTP,
        name=name or "Authenticator app",
        status="pending",
        primary=False,
        expires_at=now + ENROLLMENT_TTL_MS,
        secret_sealed=box.seal(secret.encode(), _secret_context(verifier_id)),
        sign_count=0,
        metadata_={"digits": params.digits, "period": params.period, "origin": origin},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return Enrollment(row, secret, await provisioning_uri(session, issuer, user, row, secret))


async def provisioning_uri(
    session: AsyncSession, issuer: Issuer, user: User, row: Verifier, secret: str
) -> str:
    """The ``otpauth://`` URI of ``row``: the issuer's brand name (or the method's ``issuer_label``)
    as the label an authenticator app shows, the user's username as the account."""
    settings = await method_settings(session, issuer.id, TOTP)
    label = settings.get("issuer_label") or brand_name(issuer)
    return totp.provisioning_uri(secret, _parameters(row), account=user.username, issuer_label=label)


def open_secret(box: SecretBox, row: Verifier) -> str:
    assert row.secret_sealed is not None
    return box.open(row.secret_sealed, _secret_context(row.id)).decode()


async def _use_step(session: AsyncSession, row: Verifier, step: int, *, activate: bool = False) -> bool:
    """Claim time step ``step`` of ``row``: True for the one request the database lets through."""
    values: dict[str, Any] = {"last_used_step": step, "last_used_at": now_ms()}
    if activate:
        values.update(status="active", expires_at=None)
    result = await session.execute(
        update(Verifier)
        .where(
            Verifier.id == row.id,
            Verifier.status == ("pending" if activate else "active"),
            (Verifier.last_used_step.is_(None)) | (Verifier.last_used_step < step),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _attempt(
    session: AsyncSession, issuer: Issuer, kind: str, user_id: str, commit: bool
) -> lockouts.Attempt:
    policy = lockouts.Policy.of(issuer)
    return await lockouts.count_attempt(session, issuer.id, kind, user_id, policy, commit=commit)


async def check_totp(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    code: str,
    *,
    verifier: Verifier | None = None,
    commit: bool = True,
) -> Check:
    """Check ``code`` against ``verifier`` (or any of the user's active TOTP verifiers)."""
    attempt = await _attempt(session, issuer, lockouts.TOTP, user.id, commit)
    if not attempt.allowed:
        return Check(False, LOCKED, locked_for_ms=attempt.locked_for_ms)
    candidates = [verifier] if verifier is not None else await active_of_type(session, user.id, TOTP)
    code = code[:MAX_CODE_LENGTH]
    for row in candidates:
        step = totp.matching_step(open_secret(box, row), _parameters(row), code)
        if step is not None and await _use_step(session, row, step):
            await lockouts.clear(session, issuer.id, lockouts.TOTP, user.id)
            await _emit(session, "user.mfa.verification.succeeded", issuer, user.id, row)
            return Check(True, verifier=row)
    # A wrong code and a replayed one (its step already used) are the same failure.
    subject = candidates[0] if candidates else None
    if subject is not None:
        await _emit(session, "user.mfa.verification.failed", issuer, user.id, subject, reason=INVALID_CODE)
    return Check(False, INVALID_CODE)


async def complete_totp(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    enrollment_id: str,
    code: str,
    *,
    if_match: str | None = None,
    commit: bool = True,
) -> Check:
    """Confirm a pending TOTP verifier with its first code; the user's first second factor also
    gets backup codes (returned once, in ``backup_codes``)."""
    row = await session.scalar(
        versions.for_update(
            select(Verifier).where(
                Verifier.id == enrollment_id, Verifier.user_id == user.id, Verifier.type == TOTP
            )
        )
    )
    if row is None:
        raise NotFound("Enrollment")
    if row.status != "pending":
        raise Conflict("This enrollment is already complete")
    check_etag("Enrollment", if_match, row.etag)
    if row.expires_at is not None and row.expires_at <= now_ms():
        return Check(False, EXPIRED)
    attempt = await _attempt(session, issuer, lockouts.TOTP, user.id, commit)
    if not attempt.allowed:
        return Check(False, LOCKED, locked_for_ms=attempt.locked_for_ms)
    step = totp.matching_step(open_secret(box, row), _parameters(row), code[:MAX_CODE_LENGTH])
    if step is None or not await _use_step(session, row, step, activate=True):
        return Check(False, INVALID_CODE)
    await versions.claim(session, row, "Enrollment", None)
    await session.refresh(row)
    await lockouts.clear(session, issuer.id, lockouts.TOTP, user.id)
    codes = await first_backup_codes(session, box, issuer, user)
    await _emit(session, "user.verifier.created", issuer, user.id, row)
    await _emit(session, "user.mfa.factor-created", issuer, user.id, row)
    return Check(True, verifier=row, backup_codes=codes)


# --- backup codes -----------------------------------------------------------------------------------


def _new_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _code_digest(box: SecretBox, verifier_id: str, code: str) -> str:
    """A keyed digest of the normalised code: a copy of the table alone cannot test guesses."""
    normalized = totp.normalize(code).lower()
    key = box.derive("backup-codes")
    return hmac.new(key, f"{verifier_id}:{normalized}".encode(), "sha256").hexdigest()


async def _replace_codes(session: AsyncSession, box: SecretBox, row: Verifier, count: int) -> list[str]:
    await session.execute(delete(BackupCode).where(BackupCode.verifier_id == row.id))
    codes: list[str] = []
    while len(codes) < count:
        code = _new_code()
        if code not in codes:
            codes.append(code)
    session.add_all(
        BackupCode(verifier_id=row.id, code_digest=_code_digest(box, row.id, code)) for code in codes
    )
    await session.flush()
    return codes


async def _code_count(session: AsyncSession, issuer_id: str) -> int:
    return int((await method_settings(session, issuer_id, BACKUP_CODES))["count"])


async def first_backup_codes(
    session: AsyncSession, box: SecretBox, issuer: Issuer, user: User
) -> list[str] | None:
    """Backup codes for a user who has none yet (called when a second factor is enrolled): a new
    ``backup_codes`` verifier and its codes, returned this once; None when the user has them."""
    if await active_of_type(session, user.id, BACKUP_CODES):
        return None
    now = now_ms()
    row = Verifier(
        id=ids.ulid("vrf_", now),
        issuer_id=issuer.id,
        user_id=user.id,
        type=BACKUP_CODES,
        name="Backup codes",
        status="active",
        primary=False,
        sign_count=0,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    codes = await _replace_codes(session, box, row, await _code_count(session, issuer.id))
    await _emit(session, "user.verifier.created", issuer, user.id, row)
    return codes


async def regenerate(
    session: AsyncSession, box: SecretBox, issuer: Issuer, user: User, verifier_id: str, if_match: str | None
) -> tuple[Verifier, list[str]]:
    """New backup codes replacing all of the verifier's codes, used or not."""
    row = await get(session, user.id, verifier_id, for_update=True)
    if row.type != BACKUP_CODES:
        raise ServiceError("Only a backup_codes verifier has codes to regenerate")
    await versions.claim(session, row, WHAT, if_match)
    codes = await _replace_codes(session, box, row, await _code_count(session, issuer.id))
    await _emit(session, "user.mfa.backup-codes.regenerated", issuer, user.id, row, count=len(codes))
    return row, codes


async def spend_backup_code(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    code: str,
    *,
    verifier: Verifier | None = None,
    commit: bool = True,
) -> Check:
    """Spend one of the user's unused backup codes; ``remaining`` says how many are left."""
    attempt = await _attempt(session, issuer, lockouts.BACKUP_CODE, user.id, commit)
    if not attempt.allowed:
        return Check(False, LOCKED, locked_for_ms=attempt.locked_for_ms)
    if verifier is None:
        found = await active_of_type(session, user.id, BACKUP_CODES)
        verifier = found[0] if found else None
    if verifier is None:
        return Check(False, INVALID_CODE)
    now = now_ms()
    spent = await session.execute(
        update(BackupCode)
        .where(
            BackupCode.verifier_id == verifier.id,
            BackupCode.code_digest == _code_digest(box, verifier.id, code[:MAX_CODE_LENGTH]),
            BackupCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    remaining = (await remaining_codes(session, [verifier.id]))[verifier.id]
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await _emit(session, "user.mfa.verification.failed", issuer, user.id, verifier, reason=INVALID_CODE)
        return Check(False, INVALID_CODE, verifier=verifier, remaining=remaining)
    await session.execute(
        update(Verifier)
        .where(Verifier.id == verifier.id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    await lockouts.clear(session, issuer.id, lockouts.BACKUP_CODE, user.id)
    await _emit(session, "user.mfa.verification.succeeded", issuer, user.id, verifier, remaining=remaining)
    if remaining <= LOW_BACKUP_CODES:
        await _emit(session, "user.mfa.backup-codes.low", issuer, user.id, verifier, remaining=remaining)
    return Check(True, verifier=verifier, remaining=remaining)


# --- every verifier ---------------------------------------------------------------------------------


async def verify(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    verifier_id: str,
    code: str,
    if_match: str | None,
) -> Check:
    """The Core API's ``verify``: one code against one verifier, under the lockout."""
    row = await get(session, user.id, verifier_id)
    check_etag(WHAT, if_match, row.etag)
    if row.type == TOTP and row.status == "active":
        return await check_totp(session, box, issuer, user, code, verifier=row, commit=False)
    if row.type == BACKUP_CODES:
        return await spend_backup_code(session, box, issuer, user, code, verifier=row, commit=False)
    if row.type == TOTP:
        raise ServiceError("This TOTP verifier is pending: complete its enrollment first")
    raise NotVerifiable(f"A {row.type} verifier has no code to verify")


async def update_verifier(
    session: AsyncSession,
    issuer: Issuer,
    user: User,
    verifier_id: str,
    changes: dict[str, Any],
    if_match: str | None,
) -> Verifier:
    """Rename a verifier or make it the user's primary one (the one offered first at sign-in)."""
    row = await get(session, user.id, verifier_id, for_update=True)
    await versions.claim(session, row, WHAT, if_match)
    if "name" in changes:
        row.name = changes["name"]
    if changes.get("primary") is True:
        await session.execute(
            update(Verifier)
            .where(Verifier.user_id == user.id, Verifier.id != row.id, Verifier.primary.is_(True))
            .values(primary=False)
            .execution_options(synchronize_session=False)
        )
        row.primary = True
    elif changes.get("primary") is False:
        row.primary = False
    await session.flush()
    await _emit(session, "user.verifier.updated", issuer, user.id, row)
    return row


async def delete_verifier(
    session: AsyncSession, issuer: Issuer, user: User, verifier_id: str, if_match: str | None
) -> None:
    """Remove a verifier. Removing the user's last second factor also removes their backup codes,
    which only ever stand in for one (a new factor later comes with new codes)."""
    row = await get(session, user.id, verifier_id, for_update=True)
    await versions.claim(session, row, WHAT, if_match)
    await _emit(session, "user.verifier.deleted", issuer, user.id, row)
    if row.type in SECOND_FACTORS and row.status == "active":
        await _emit(session, "user.mfa.factor-deleted", issuer, user.id, row)
    await session.delete(row)
    await session.flush()
    if row.type in SECOND_FACTORS and not await has_second_factor(session, user.id):
        for codes in await active_of_type(session, user.id, BACKUP_CODES):
            await _emit(session, "user.verifier.deleted", issuer, user.id, codes)
            await session.delete(codes)
        await session.flush()
