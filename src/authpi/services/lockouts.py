"""Credential lockout (decision 20): after ``max_failures`` failed verifications of one credential it
locks for ``duration`` seconds from the failure that reached the limit.

One store and one code path serve every credential kind (password today; one-time codes, TOTP and
backup codes later) and every subject, whether or not an account exists behind it, so neither the
answers nor the timing of a lockout can tell the two apart.

Every attempt is counted *before* the credential is checked, in one statement whose result the
database decides (``INSERT … ON CONFLICT DO UPDATE … RETURNING``): concurrent attempts each get their
own number, and an attempt numbered past the limit is refused without checking anything. Only a
successful verification clears the count, so a counted attempt that turns out wrong simply stays.
Attempts still being checked count too: more than ``max_failures`` at once for one credential are
refused even if some carry the right secret, since none can be known right before it is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.storage.dialects import upsert
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.lockouts import CredentialLockout

# Credential kinds sharing the rule; the subject is what identifies the credential within the kind.
PASSWORD = "password"
TOTP = "totp"  # subject: the user ID (all of a user's authenticator apps together)
BACKUP_CODE = "backup_code"  # subject: the user ID
# subject: the sign-in method and the identifier's login key (the same with and without an account)
ONE_TIME_CODE = "one_time_code"


@dataclass(frozen=True)
class Policy:
    max_failures: int
    duration_s: int

    @classmethod
    def of(cls, issuer: Issuer) -> Policy:
        lockout = issuer.settings["security"]["lockout"]
        return cls(int(lockout["max_failures"]), int(lockout["duration"]))


@dataclass(frozen=True)
class Attempt:
    """The database's verdict on one counted attempt."""

    number: int
    locked_for_ms: int  # > 0: refused as locked, the lock ends in this many milliseconds

    @property
    def allowed(self) -> bool:
        return self.locked_for_ms == 0


def subject_digest(subject: str) -> str:
    return hashing.digest(subject)


async def count_attempt(
    session: AsyncSession, issuer_id: str, kind: str, subject: str, policy: Policy, *, commit: bool = True
) -> Attempt:
    """Count one attempt against ``(issuer_id, kind, subject)`` and say whether it may proceed.

    Commits at once, so the row is not held while the (slow) verification runs. A Core API request
    (one transaction per request, and a fast check) passes ``commit=False``: the count then commits
    with the request, which answers 2xx for a wrong code too, so the count is never rolled back.
    """
    now = now_ms()
    table = CredentialLockout.__table__
    forgotten = table.c.expires_at <= now
    number = case((forgotten, 1), else_=table.c.attempts + 1)
    insert = upsert(session, table).values(
        issuer_id=issuer_id,
        kind=kind,
        subject=subject_digest(subject),
        attempts=1,
        expires_at=now + policy.duration_s * 1000,
    )
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.issuer_id, table.c.kind, table.c.subject],
        set_={
            "attempts": number,
            # Up to the limit every attempt restarts the clock; past it the lock keeps its end.
            "expires_at": case(
                (number <= policy.max_failures, now + policy.duration_s * 1000),
                else_=table.c.expires_at,
            ),
        },
    ).returning(table.c.attempts, table.c.expires_at)
    attempts, expires_at = (await session.execute(statement)).one()
    if commit:
        await session.commit()
    # A concurrent attempt may have set the clock a moment after ``now``: never say more than the rule.
    locked_for = min(policy.duration_s * 1000, max(1, expires_at - now))
    return Attempt(attempts, locked_for if attempts > policy.max_failures else 0)


async def clear(session: AsyncSession, issuer_id: str, kind: str, subject: str) -> None:
    """Forget the attempts (the credential verified, or an admin replaced it). The caller commits."""
    await session.execute(
        delete(CredentialLockout).where(
            CredentialLockout.issuer_id == issuer_id,
            CredentialLockout.kind == kind,
            CredentialLockout.subject == subject_digest(subject),
        )
    )
