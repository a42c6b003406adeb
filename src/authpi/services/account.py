"""What a signed-in user may do to their own account in the account portal (decision 21): edit
their profile, change their password, end their other sign-ins and withdraw the consents they
gave. The portal's HTTP layer (``oidc/portal/``) calls these; second factors and trusted devices
reuse ``services/verifiers`` and ``services/trusted_devices``.

Every change is the user's own, on rows looked up through their ID (another user's session or
consent is simply not found), and every one emits its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import next_version, now_ms
from authpi.crypto import passwords
from authpi.services import events, lockouts, sessions, trusted_devices, users
from authpi.services.errors import InvalidInput, NotFound
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.oauth import Consent
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

# The profile claims a user edits themselves, with their length caps (the rest is the admin's).
PROFILE_FIELDS: dict[str, int] = {
    "name": 200,
    "given_name": 100,
    "family_name": 100,
    "nickname": 100,
    "locale": 35,
    "zoneinfo": 64,
}
MAX_PASSWORD = 1024
MAX_LISTED = 50
USER_REVOKED = "user_revoked"  # a session the user ended from the portal
PASSWORD_CHANGED = "password_changed"
CONSENT_REVOKED = "consent_revoked"


# --- profile --------------------------------------------------------------------------------------


async def update_profile(session: AsyncSession, user: User, values: dict[str, str]) -> bool:
    """Set the editable profile claims in ``values`` (an empty one removes the claim); the other
    claims stay. Returns whether anything changed (``user.updated`` then)."""
    for key, value in values.items():
        if key in PROFILE_FIELDS and len(value.strip()) > PROFILE_FIELDS[key]:
            raise InvalidInput.on(key, "too_long", f"At most {PROFILE_FIELDS[key]} characters")
    locked = await users.lock(session, user.id)
    if locked is None:
        raise NotFound("User")
    profile = dict(locked.profile)
    for key in PROFILE_FIELDS:
        if key not in values:
            continue
        value = values[key].strip()
        if value:
            profile[key] = value
        else:
            profile.pop(key, None)
    if profile == locked.profile:
        return False
    locked.profile = profile
    locked.updated_at = next_version(locked.updated_at)
    await session.flush()
    await events.emit_for(
        session, "user.updated", locked, "user", issuer_id=locked.issuer_id, user_id=locked.id
    )
    return True


# --- password -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordChange:
    """What a password change came to: ``problem`` says what was wrong when it was refused."""

    problem: str | None = None
    field: str = "password"


async def change_password(
    session: AsyncSession,
    issuer: Issuer,
    user: User,
    current_session: Session,
    *,
    current: str,
    new: str,
    confirm: str,
) -> PasswordChange:
    """The user's own password change: the current password first (a wrong one counts toward the
    lockout, decision 20), then the policy. The user's other sign-ins and trusted devices end
    with the old password; the sign-in they made the change from stays."""
    if user.password_hash is None:
        return PasswordChange("This account has no password to change.", "current")
    if new != confirm:
        return PasswordChange("The two new passwords do not match.")
    problems = users.policy_problems(await users.password_policy(session, issuer.id), new)
    if problems:
        return PasswordChange(problems[0].message + ".")
    policy = lockouts.Policy.of(issuer)
    attempt = await lockouts.count_attempt(session, issuer.id, lockouts.PASSWORD, user.username_key, policy)
    if not attempt.allowed:
        minutes = -(-attempt.locked_for_ms // 60_000)
        return PasswordChange(f"Too many failed attempts. Try again in {minutes} minutes.", "current")
    expected = user.password_hash
    if not await passwords.verify_password(expected, current[:MAX_PASSWORD]):
        return PasswordChange("Your current password is not right.", "current")
    new_hash = await passwords.hash_password(new)
    if not await users.replace_password(session, user, expected, new_hash):
        return PasswordChange("Your password was changed meanwhile. Try again.", "current")
    others = await _other_sign_ins(session, user, current_session)
    await sessions.end_many(
        session, others, "revoked", PASSWORD_CHANGED, user.id, account_id=issuer.account_id
    )
    await trusted_devices.revoke_all(
        session, user.id, reason=trusted_devices.PASSWORD_CHANGED, account_id=issuer.account_id
    )
    return PasswordChange()


async def _other_sign_ins(session: AsyncSession, user: User, current: Session) -> list[Session]:
    rows = await session.scalars(
        select(Session).where(
            Session.user_id == user.id,
            Session.type == "op",
            Session.id != current.id,
            Session.status.not_in(sessions.TERMINAL),
        )
    )
    return list(rows.all())


# --- sessions -------------------------------------------------------------------------------------


async def sign_ins(session: AsyncSession, user: User) -> list[Session]:
    """The user's live browser sessions, newest first."""
    rows = await session.scalars(
        select(Session)
        .where(Session.user_id == user.id, Session.type == "op", Session.status.not_in(sessions.TERMINAL))
        .order_by(Session.id.desc())
        .limit(MAX_LISTED)
    )
    now = now_ms()
    return [row for row in rows.all() if sessions.effective_status(row, now) in ("active", "suspended")]


async def revoke_sign_in(session: AsyncSession, issuer: Issuer, user: User, session_id: str) -> None:
    """End one of the user's browser sessions and every application session under it (their
    refresh tokens stop working at once). Another user's session is not found."""
    row = await session.scalar(
        select(Session)
        .where(Session.id == session_id[:64], Session.user_id == user.id, Session.type == "op")
        .with_for_update()
    )
    if row is None or row.issuer_id != issuer.id or row.status in sessions.TERMINAL:
        raise NotFound("Session")
    await sessions.end_many(session, [row], "revoked", USER_REVOKED, user.id, account_id=issuer.account_id)


# --- consents -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    consent: Consent
    client_name: str


async def consents(session: AsyncSession, user: User) -> Sequence[Grant]:
    rows = await session.execute(
        select(Consent, Client.name)
        .outerjoin(Client, Client.id == Consent.client_id)
        .where(Consent.user_id == user.id)
        .order_by(Consent.created_at.desc())
        .limit(MAX_LISTED)
    )
    return [Grant(consent, name or consent.client_id) for consent, name in rows.all()]


async def revoke_consent(session: AsyncSession, issuer: Issuer, user: User, consent_id: str) -> None:
    """Withdraw a consent: the application asks again next time, and its sessions for the user end
    now (their refresh tokens with them). The DELETE decides between two revocations at once."""
    consent = await session.scalar(
        select(Consent).where(Consent.id == consent_id[:64], Consent.user_id == user.id)
    )
    if consent is None or consent.issuer_id != issuer.id:
        raise NotFound("Consent")
    gone = await session.execute(
        delete(Consent).where(Consent.id == consent.id).execution_options(synchronize_session=False)
    )
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("Consent")
    await sessions.revoke_all(
        session, issuer.id, user_id=user.id, client_id=consent.client_id, reason=CONSENT_REVOKED, by=user.id
    )
    await events.emit(
        session,
        "user.consent.revoked",
        subject={"type": "user", "id": user.id},
        data={"consent_id": consent.id, "client_id": consent.client_id, "scopes": list(consent.scopes)},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
        client_id=consent.client_id,
    )
