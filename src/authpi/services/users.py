"""Users of an issuer (decision 24): a typed, per-issuer unique username, a free-form profile, an
optional argon2id password checked against the issuer's password policy, and a status lifecycle.

Usernames are unique per issuer on a normalised key (``username_key``): e-mail addresses and unique
names compare case-insensitively, phone numbers are E.164 without separators. The keys of the three
types cannot collide (only e-mails contain ``@``, only phone numbers start with ``+``), so a login
identifier can be looked up without knowing its type. Lists show ``username_hash`` (SHA-256 of the
key), never the username.

PATCH replaces ``profile``, ``metadata``, ``custom_fields`` and ``preferences`` wholesale (send the
full object); it never merges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Row, Select, bindparam, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.services import events, issuers, lockouts, organizations, sessions, trusted_devices, versions
from authpi.services.auth_method_types import TYPES as METHOD_TYPES
from authpi.services.clients import scope_names
from authpi.services.errors import Conflict, FieldProblem, InvalidInput, InvalidRequest, NotFound
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

USERNAME_TYPES = ("email", "unique-name", "phone")
STATUSES = ("active", "suspended", "disabled", "deleted", "pending_approval", "blocked")
# Statuses an admin may set through PATCH (deleted: DELETE; pending_approval/blocked: approvals).
SETTABLE = ("active", "suspended", "disabled")
# Reaching one of these revokes the user's live sessions (reason "user_<status>").
ENDS_SESSIONS = ("suspended", "disabled", "deleted", "blocked")
STORE_ID = "default"
MAX_PASSWORD_LENGTH = 1024
# A temporary password's life (decision 30) unless the request or the issuer's
# ``temporary_password`` method (its ``ttl``) says otherwise.
TEMPORARY_PASSWORD_TTL = 604_800

_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = str.maketrans("", "", " -().")
_UNIQUE_NAME = re.compile(r"^[A-Za-z0-9._-]{3,64}$")
_PROFILE_STRINGS = (
    "name",
    "display_name",
    "first_name",
    "last_name",
    "middle_name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "website",
    "locale",
    "zoneinfo",
    "birthdate",
    "gender",
)
_PROFILE_BOOLEANS = ("email_verified", "phone_number_verified")
_CONFLICT = "A user with this username already exists in this issuer"


@dataclass(frozen=True)
class Username:
    value: str  # as stored and returned
    key: str  # the normalised uniqueness key


def normalize_username(username_type: str, raw: str) -> Username:
    """Validate ``raw`` as a username of ``username_type``; 422 on field ``username`` otherwise."""
    text = raw.strip()
    if username_type == "email":
        try:
            normalized = validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidInput.on("username", "invalid_email", f"Not a valid e-mail address: {exc}") from exc
        return Username(normalized, normalized.lower())
    if username_type == "phone":
        number = text.translate(_PHONE_SEPARATORS)
        if not _PHONE.match(number):
            raise InvalidInput.on(
                "username", "invalid_phone", "A phone username is an E.164 number such as +14155550123"
            )
        return Username(number, number)
    if username_type == "unique-name":
        if not _UNIQUE_NAME.match(text):
            raise InvalidInput.on(
                "username",
                "invalid_username",
                "A unique name is 3-64 characters of letters, digits, '.', '_' or '-'",
            )
        return Username(text, text.lower())
    raise InvalidInput.on("username_type", "invalid_choice", f"username_type must be one of {USERNAME_TYPES}")


def candidate_keys(identifier: str) -> list[str]:
    """Every username key ``identifier`` could stand for, whatever its type."""
    keys = []
    for username_type in USERNAME_TYPES:
        try:
            keys.append(normalize_username(username_type, identifier).key)
        except InvalidInput:
            continue
    return keys


def login_key(identifier: str) -> str:
    """The one key ``identifier`` stands for at sign-in, whether or not a user holds it: the username
    key it normalises to, else its trimmed, case-folded text. Lockouts are counted on it."""
    keys = candidate_keys(identifier)
    return keys[0] if keys else identifier.strip().casefold()


async def lock(session: AsyncSession, user_id: str) -> User | None:
    """The user re-read under a row lock (PostgreSQL; SQLite serialises writers anyway), for
    changes that must not interleave with a status change or another sign-in of the same user."""
    user: User | None = await session.scalar(
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    )
    return user


async def find_by_username(session: AsyncSession, issuer_id: str, identifier: str) -> User | None:
    """The issuer's (non-deleted) user whose username matches ``identifier``, e.g. at login."""
    keys = candidate_keys(identifier)
    if not keys:
        return None
    return await session.scalar(
        select(User).where(User.issuer_id == issuer_id, User.username_key.in_(keys), User.status != "deleted")
    )


# --- password policy ---------------------------------------------------------------------------


async def password_policy(session: AsyncSession, issuer_id: str) -> dict[str, Any]:
    """The issuer's password method settings over the documented defaults (defaults without one)."""
    settings = await session.scalar(
        select(AuthMethod.settings).where(AuthMethod.issuer_id == issuer_id, AuthMethod.method == "password")
    )
    return {**METHOD_TYPES["password"].defaults, **(settings or {})}


def policy_problems(policy: dict[str, Any], password: str, field: str = "password") -> list[FieldProblem]:
    low, high = int(policy["min_length"]), min(int(policy["max_length"]), MAX_PASSWORD_LENGTH)
    checks = (
        (len(password) < low, "too_short", f"The password must be at least {low} characters"),
        (len(password) > high, "too_long", f"The password must be at most {high} characters"),
        (
            policy["require_uppercase"] and not any(c.isupper() for c in password),
            "missing_uppercase",
            "The password needs an uppercase letter",
        ),
        (
            policy["require_lowercase"] and not any(c.islower() for c in password),
            "missing_lowercase",
            "The password needs a lowercase letter",
        ),
        (
            policy["require_digit"] and not any(c.isdigit() for c in password),
            "missing_digit",
            "The password needs a digit",
        ),
        (
            policy["require_symbol"] and all(c.isalnum() or c.isspace() for c in password),
            "missing_symbol",
            "The password needs a symbol",
        ),
    )
    return [FieldProblem(field, code, message) for failed, code, message in checks if failed]


async def check_password(
    session: AsyncSession, issuer_id: str, password: str, field: str = "password"
) -> None:
    """422 on ``field`` when ``password`` breaks the issuer's policy."""
    problems = policy_problems(await password_policy(session, issuer_id), password, field)
    if problems:
        raise InvalidInput(problems[0].message, fields=problems)


def _set_password(user: User, password_hash: str | None, temporary_until: int | None = None) -> None:
    user.password_hash = password_hash
    user.password_changed_at = now_ms() if password_hash is not None else None
    user.password_temporary_until = temporary_until if password_hash is not None else None


def _password_fields(body: dict[str, Any]) -> tuple[str | None, bool]:
    """The password a create or update sets, and whether it is a temporary one (decision 30).
    Both kinds in one request, or an expiry without a temporary password, is a 400."""
    if body.get("password") is not None and body.get("temporary_password") is not None:
        raise InvalidRequest(
            [
                FieldProblem(
                    "temporary_password",
                    "conflicting_fields",
                    "Send either password or temporary_password, not both",
                )
            ]
        )
    if body.get("temporary_password_expires_in") is not None and body.get("temporary_password") is None:
        raise InvalidRequest(
            [
                FieldProblem(
                    "temporary_password_expires_in",
                    "requires_temporary_password",
                    "temporary_password_expires_in needs a temporary_password",
                )
            ]
        )
    if body.get("temporary_password") is not None:
        return str(body["temporary_password"]), True
    return body.get("password"), False


async def temporary_until(session: AsyncSession, issuer_id: str, expires_in: int | None) -> int:
    """When a temporary password set now stops working: ``expires_in`` seconds from now, else the
    ``ttl`` configured on the issuer's ``temporary_password`` method, else 7 days."""
    if expires_in is None:
        settings = await session.scalar(
            select(AuthMethod.settings).where(
                AuthMethod.issuer_id == issuer_id, AuthMethod.method == "temporary_password"
            )
        )
        configured = (settings or {}).get("ttl")
        expires_in = configured if isinstance(configured, int) and configured > 0 else TEMPORARY_PASSWORD_TTL
    return now_ms() + expires_in * 1000


async def replace_password(
    session: AsyncSession, user: User, expected_hash: str, new_hash: str, *, temporary: bool = False
) -> bool:
    """Swap the password ``expected_hash`` of ``user`` for the one they chose (after a temporary
    one, or in the account portal). One guarded UPDATE decides: it applies only while that very
    password is still set (and, for a ``temporary`` one, live), so of two changes at once, or one
    racing an administrator's, exactly one wins. Returns whether this one did; the winner clears
    the password's lockout count and records ``user.password.changed``."""
    now = now_ms()
    guard = [User.id == user.id, User.password_hash == expected_hash]
    if temporary:
        guard.append(User.password_temporary_until > now)
    result = await session.execute(
        update(User)
        .where(*guard)
        .values(
            password_hash=new_hash,
            password_temporary_until=None,
            password_changed_at=now,
            updated_at=case((User.updated_at >= now, User.updated_at + 1), else_=now),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await session.refresh(user)
    await lockouts.clear(session, user.issuer_id, lockouts.PASSWORD, user.username_key)
    await _emit(session, "user.password.changed", user)
    return True


async def _hashed(password: str | None) -> str | None:
    """The argon2 hash of ``password``, computed before the write transaction starts (it is slow)."""
    return await passwords.hash_password(password) if password is not None else None


# --- validation --------------------------------------------------------------------------------


def _check_profile(profile: dict[str, Any]) -> dict[str, Any]:
    for key in _PROFILE_STRINGS:
        if profile.get(key) is not None and not isinstance(profile[key], str):
            raise InvalidInput.on(f"profile.{key}", "invalid_type", f"profile.{key} must be a string")
    for key in _PROFILE_BOOLEANS:
        if key in profile and not isinstance(profile[key], bool):
            raise InvalidInput.on(f"profile.{key}", "invalid_type", f"profile.{key} must be a boolean")
    return profile


def _set_status(user: User, status: str, reason: str | None, by: str | None) -> bool:
    """Move ``user`` to ``status``; True when the status actually changed."""
    if status == user.status:
        return False
    if user.status not in SETTABLE:
        raise Conflict(f"A {user.status} user cannot be moved to {status} here")
    user.status = status
    user.status_at = now_ms()
    user.status_reason = reason
    user.status_by = by
    return True


async def _flush_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create took the username first
        await session.rollback()
        raise Conflict(_CONFLICT) from exc


# --- operations --------------------------------------------------------------------------------


async def create_user(session: AsyncSession, issuer_id: str, body: dict[str, Any]) -> User:
    username = normalize_username(body["username_type"], body["username"])
    status = body.get("status") or "active"
    if status not in SETTABLE:
        raise InvalidInput.on("status", "invalid_choice", f"A new user's status is one of {SETTABLE}")
    profile = _check_profile(body.get("profile") or {})
    scopes = scope_names("scopes", body["scopes"]) if body.get("scopes") is not None else None
    password, temporary = _password_fields(body)
    if password is not None:
        await check_password(session, issuer_id, password, "temporary_password" if temporary else "password")
    password_hash = await _hashed(password)
    expires_in = body.get("temporary_password_expires_in")
    until = await temporary_until(session, issuer_id, expires_in) if temporary else None
    taken = await session.scalar(
        select(User.id).where(User.issuer_id == issuer_id, User.username_key == username.key)
    )
    if taken:
        raise Conflict(_CONFLICT)
    now = now_ms()
    user = User(
        id=ids.user_id(),
        issuer_id=issuer_id,
        username_type=body["username_type"],
        username=username.value,
        username_key=username.key,
        username_hash=hashing.digest(username.key),
        status=status,
        status_at=now,
        status_reason=body.get("status_reason"),
        status_by=body.get("status_by"),
        profile=profile,
        scopes=scopes,
        preferences=body.get("preferences"),
        custom_fields=body.get("custom_fields"),
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    if password is not None:
        _set_password(user, password_hash, until)
    # Built from the complete row before the INSERT, so the write lock (SQLite's, held from the first
    # write to the commit) covers the two statements only.
    created = await events.prepare_for(
        session, "user.created", user, "user", issuer_id=user.issuer_id, user_id=user.id
    )
    session.add(user)
    await _flush_unique(session)
    await events.record(session, created)
    return user


# Status changes with an event of their own; other changes are ``user.updated``. A suspended
# ("temporary admin block") or disabled ("permanent block") user is blocked, as a disabled client
# is ``client.blocked``; back to active is ``user.unblocked``.
_STATUS_EVENTS = {
    ("active", "suspended"): "user.blocked",
    ("active", "disabled"): "user.blocked",
    ("suspended", "active"): "user.unblocked",
    ("disabled", "active"): "user.unblocked",
    ("blocked", "active"): "user.unblocked",
}


async def _emit(session: AsyncSession, kind: str, user: User) -> None:
    await events.emit_for(session, kind, user, "user", issuer_id=user.issuer_id, user_id=user.id)


def _change_events(status_before: str, user: User, changes: dict[str, Any]) -> list[str]:
    kinds = ["user.password.changed"] if "password" in changes else []
    if user.status != status_before:
        kinds.append(_STATUS_EVENTS.get((status_before, user.status), "user.updated"))
    elif set(changes) - {"password"}:
        kinds.append("user.updated")
    return kinds


def list_statement(issuer_id: str, *, q: str | None = None, status: str | None = None) -> Select[Any]:
    stmt = select(User).where(User.issuer_id == issuer_id)
    stmt = stmt.where(User.status == status) if status else stmt.where(User.status != "deleted")
    if q:
        stmt = stmt.where(or_(User.username_key.in_(candidate_keys(q)), User.id == q))
    return stmt


# The columns a Core API read of one user shows (``http.schemas.users.user_body``): plain columns,
# no ORM entity (nothing to track for a read, and the password hash is never loaded).
READ_COLUMNS = (
    User.id,
    User.issuer_id,
    User.status,
    User.status_at,
    User.status_reason,
    User.status_by,
    User.username_type,
    User.username,
    User.profile,
    User.scopes,
    User.security,
    User.preferences,
    User.approval,
    User.custom_fields,
    User.metadata_,
    User.created_at,
    User.updated_at,
)


# Built once: building a select per request costs more than running it.
_READ_USER = (
    select(*READ_COLUMNS)
    .join(Issuer, Issuer.id == User.issuer_id)
    .where(
        User.id == bindparam("user_id"),
        User.issuer_id == bindparam("issuer_id"),
        User.status != "deleted",
        Issuer.account_id == bindparam("account_id"),
        Issuer.status != "deleted",
    )
)


async def read_user(session: AsyncSession, account_id: str, issuer_id: str, user_id: str) -> Row[Any]:
    """The user of the account's issuer, for display, in one statement (the issuer checked by a join,
    not fetched). Not found: 404 ``Issuer`` when the issuer is missing, as every issuer route
    answers, else 404 ``User``."""
    params = {"user_id": user_id, "issuer_id": issuer_id, "account_id": account_id}
    row = (await session.execute(_READ_USER, params)).first()
    if row is None:
        await issuers.get_issuer(session, account_id, issuer_id)  # raises NotFound("Issuer")
        raise NotFound("User")
    return row


async def get_user(session: AsyncSession, issuer_id: str, user_id: str, *, for_update: bool = False) -> User:
    stmt = select(User).where(User.id == user_id, User.issuer_id == issuer_id, User.status != "deleted")
    if for_update:
        stmt = versions.for_update(stmt)
    user = await session.scalar(stmt)
    if user is None:
        raise NotFound("User")
    return user


async def update_user(
    session: AsyncSession, issuer_id: str, user_id: str, changes: dict[str, Any], if_match: str | None
) -> User:
    password, temporary = _password_fields(changes)
    if password is not None:
        await check_password(session, issuer_id, password, "temporary_password" if temporary else "password")
    password_hash = await _hashed(password)
    expires_in = changes.get("temporary_password_expires_in")
    until = await temporary_until(session, issuer_id, expires_in) if temporary else None
    if temporary:
        # From here on a temporary password is a password change like any other.
        changes = {k: v for k, v in changes.items() if not k.startswith("temporary_password")}
        changes["password"] = password
    user = await get_user(session, issuer_id, user_id, for_update=True)
    await versions.claim(session, user, "User", if_match)
    status_before = user.status
    problems = [
        FieldProblem(field, "immutable", f"{field} cannot change")
        for field in ("username", "username_type")
        if changes.get(field) is not None and changes[field] != getattr(user, field)
    ]
    if problems:
        raise InvalidInput(problems[0].message, fields=problems)
    if "profile" in changes:
        user.profile = _check_profile(changes["profile"] or {})
    if "scopes" in changes:
        user.scopes = scope_names("scopes", changes["scopes"]) if changes["scopes"] is not None else None
    for field in ("preferences", "custom_fields"):
        if field in changes:
            setattr(user, field, changes[field])
    if "metadata" in changes:
        user.metadata_ = changes["metadata"] or {}
    ended = False
    if changes.get("status"):
        ended = _set_status(user, changes["status"], changes.get("status_reason"), changes.get("status_by"))
    else:
        for field in ("status_reason", "status_by"):
            if field in changes:
                setattr(user, field, changes[field])
    replaced = "password" in changes and user.password_hash is not None
    if "password" in changes:
        _set_password(user, password_hash, until)
        # A new password is a new credential: failures counted against the old one no longer apply.
        await lockouts.clear(session, issuer_id, lockouts.PASSWORD, user.username_key)
    if ended and user.status in ENDS_SESSIONS:
        await sessions.revoke_all(
            session, issuer_id, user_id=user.id, reason=f"user_{user.status}", by=user.status_by
        )
    if "password" in changes:
        # Trust given with the old password ends with it: the next sign-in asks the second factor.
        await trusted_devices.revoke_all(session, user.id, reason=trusted_devices.PASSWORD_CHANGED)
    if replaced:
        # A reset password is usually a compromised one: every sign-in made with it ends.
        reason = "password_changed" if user.password_hash is not None else "password_removed"
        await sessions.revoke_all(session, issuer_id, user_id=user.id, reason=reason)
    await session.flush()
    for kind in _change_events(status_before, user, changes):
        await _emit(session, kind, user)
    return user


async def delete_user(session: AsyncSession, issuer_id: str, user_id: str, if_match: str | None) -> None:
    """Soft delete: the row stays (status ``deleted``) until purged; its username is freed at once
    and every session of the user is revoked."""
    user = await get_user(session, issuer_id, user_id, for_update=True)
    await versions.claim(session, user, "User", if_match)
    now = now_ms()
    user.status = "deleted"
    user.status_at = now
    user.deleted_at = now
    # The unique key moves aside so the username can be registered again; username_hash remains.
    user.username_key = f"deleted:{user.id}"
    await sessions.revoke_all(session, issuer_id, user_id=user.id, reason="user_deleted")
    await organizations.remove_user_everywhere(session, user.id)
    await session.flush()
    await _emit(session, "user.deleted", user)
