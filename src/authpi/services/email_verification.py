"""Proving a mailbox (or a phone) before an address counts (issue 11 item 5): at sign-up, when the issuer asks
for it (``settings.access.verify_email``) and always while ``allowed_email_domains`` restricts
sign-up (else anyone could type an address of the allowed domain); and when a user changes their
address in the account portal, where the new address replaces the old one only once proven.

The proof is a one-time code and link by email (``services/one_time_codes``, purposes
``verify_email`` and ``change_email``): the account a sign-up asks for does not exist until then
(what it is created from waits in the code's ``data``), so an unproven address never has an
account, and ``email_verified`` is true exactly for proven addresses. A phone number changed in the
portal is proven the same way by an SMS code (``phone_number_verified``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import next_version, now_ms
from authpi.crypto import hashing
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, messages, one_time_codes, users
from authpi.services.errors import InvalidInput
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.one_time_codes import OneTimeCode
from authpi.storage.tables.users import User

TTL_MS = 15 * 60_000
TEMPLATE = "verify_address"  # email (code and link) and SMS (code)
SIGNUP = one_time_codes.VERIFY_EMAIL
CHANGE = one_time_codes.CHANGE_EMAIL
CHANGE_PHONE = one_time_codes.CHANGE_PHONE


def required_at_signup(issuer: Issuer) -> bool:
    access = issuer.settings.get("access") or {}
    return bool(access.get("allowed_email_domains")) or access.get("verify_email") is True


def link_url(public_url: str, issuer_id: str, token: str) -> str:
    return f"{public_url}/{issuer_id}/verify-email/{token}"


async def send(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    *,
    public_url: str,
    purpose: str,
    email: str,
    data: dict[str, Any],
    user_id: str | None = None,
    request_id: str | None = None,
    browser: str | None = None,
    link: bool = True,
    locale: str | None = None,
) -> one_time_codes.Issued:
    """A code (and, with ``link``, a link) proving ``email`` for ``purpose``, mailed through the
    outbox in the caller's transaction (the caller checks the send limits first and commits), in
    ``locale`` (the language of the page that asked)."""
    issued = await one_time_codes.issue(
        session,
        box,
        issuer_id=issuer.id,
        purpose=purpose,
        channel="email",
        recipient=email,
        user_id=user_id,
        request_id=request_id,
        browser=browser,
        ttl_ms=TTL_MS,
        code=True,
        link=link,
        data=data,
    )
    assert issued.code is not None
    await messages.enqueue(
        session,
        box,
        account_id=issuer.account_id,
        issuer=issuer,
        channel="email",
        recipient=email,
        template=TEMPLATE,
        context={
            "email": email,
            "code": issued.code,
            "link": link_url(public_url, issuer.id, issued.link_token) if issued.link_token else None,
            "minutes": TTL_MS // 60_000,
        },
        locale=locale,
    )
    return issued


async def create_account(session: AsyncSession, issuer: Issuer, data: dict[str, Any]) -> User | None:
    """The account a proven sign-up asked for (``data`` as the sign-up stored it: ``email``,
    ``key``, ``name``, optionally ``password_hash``), its address verified; None when the address
    was taken meanwhile (the unique key decides, also between two proofs at once). The caller
    commits."""
    now = now_ms()
    profile: dict[str, Any] = {"email_verified": True}
    if data.get("name"):
        profile["name"] = str(data["name"])[:200]
    key = str(data["key"])
    password_hash = data.get("password_hash")
    user = User(
        id=str(data.get("user_id") or ids.user_id()),
        issuer_id=issuer.id,
        username_type="email",
        username=str(data["email"]),
        username_key=key,
        username_hash=hashing.digest(key),
        status="pending_approval" if issuer.settings["access"]["mode"] == "approval" else "active",
        status_at=now,
        profile=profile,
        metadata_={},
        password_hash=str(password_hash) if password_hash else None,
        password_changed_at=now if password_hash else None,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        return None
    scope: dict[str, Any] = {"account_id": issuer.account_id, "issuer_id": issuer.id, "user_id": user.id}
    await events.emit_for(session, "user.created", user, "user", **scope)
    await events.emit_for(session, "user.email.verified", user, "user", **scope)
    if user.status == "pending_approval":
        await events.emit_for(session, "user.approval.requested", user, "user", **scope)
    return user


async def pending_signup(
    session: AsyncSession, issuer_id: str, request_id: str, browser: str
) -> OneTimeCode | None:
    """The newest unspent sign-up code of this pending sign-in, asked for in this browser."""
    row: OneTimeCode | None = await session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.issuer_id == issuer_id,
            OneTimeCode.purpose == SIGNUP,
            OneTimeCode.request_id == request_id,
            OneTimeCode.browser == browser,
            OneTimeCode.consumed_at.is_(None),
        )
        .order_by(OneTimeCode.id.desc())
        .limit(1)
    )
    return row


async def taken(session: AsyncSession, issuer_id: str, key: str) -> bool:
    found = await session.scalar(select(User.id).where(User.issuer_id == issuer_id, User.username_key == key))
    return found is not None


def address_of(user: User) -> str | None:
    """The user's email address: the username of an email user, else the profile's ``email``."""
    if user.username_type == "email":
        return user.username
    email = user.profile.get("email")
    return email if isinstance(email, str) else None


def normalized(email: str) -> users.Username:
    """``email`` as it would be stored; ``InvalidInput`` when it is not an address."""
    return users.normalize_username("email", email)


async def apply_change(session: AsyncSession, issuer: Issuer, user_id: str, email: str) -> User | None:
    """The proven ``email`` replaces the user's address (their username, for an email user), now
    verified: ``user.email.changed`` and ``user.email.verified``. None when the user can no longer
    change it (gone, blocked) or another account took the address meanwhile. The caller commits."""
    user = await users.lock(session, user_id)
    if user is None or user.issuer_id != issuer.id or user.status != "active":
        return None
    try:
        address = normalized(email)
    except InvalidInput:
        return None
    profile = dict(user.profile)
    if user.username_type == "email":
        user.username, user.username_key = address.value, address.key
        user.username_hash = hashing.digest(address.key)
        if "email" in profile:
            profile["email"] = address.value
    else:
        profile["email"] = address.value
    profile["email_verified"] = True
    user.profile = profile
    user.updated_at = next_version(user.updated_at)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        return None
    scope: dict[str, Any] = {"account_id": issuer.account_id, "issuer_id": issuer.id, "user_id": user.id}
    await events.emit_for(session, "user.email.changed", user, "user", **scope)
    await events.emit_for(session, "user.email.verified", user, "user", **scope)
    return user


# --- phone numbers ----------------------------------------------------------------------------------


def phone_of(user: User) -> str | None:
    """The user's phone number: the username of a phone user, else the profile's ``phone_number``."""
    if user.username_type == "phone":
        return user.username
    number = user.profile.get("phone_number")
    return number if isinstance(number, str) else None


async def send_phone_code(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    *,
    number: str,
    user_id: str,
    locale: str | None = None,
) -> one_time_codes.Issued:
    """A code proving ``number`` for the user's phone change, sent by SMS through the outbox in
    the caller's transaction (the caller checks the send limits first and commits)."""
    issued = await one_time_codes.issue(
        session,
        box,
        issuer_id=issuer.id,
        purpose=CHANGE_PHONE,
        channel="sms",
        recipient=number,
        user_id=user_id,
        ttl_ms=TTL_MS,
        data={"phone_number": number},
    )
    assert issued.code is not None
    await messages.enqueue(
        session,
        box,
        account_id=issuer.account_id,
        issuer=issuer,
        channel="sms",
        recipient=number,
        template=TEMPLATE,
        context={"email": None, "link": None, "code": issued.code, "minutes": TTL_MS // 60_000},
        locale=locale,
    )
    return issued


async def apply_phone_change(session: AsyncSession, issuer: Issuer, user_id: str, number: str) -> User | None:
    """The proven ``number`` replaces the user's phone number (their username, for a phone user),
    now verified (``phone_number_verified``): ``user.updated``. None when the user can no longer
    change it or another account took the number meanwhile. The caller commits."""
    user = await users.lock(session, user_id)
    if user is None or user.issuer_id != issuer.id or user.status != "active":
        return None
    try:
        phone = users.normalize_username("phone", number)
    except InvalidInput:
        return None
    profile = dict(user.profile)
    if user.username_type == "phone":
        user.username, user.username_key = phone.value, phone.key
        user.username_hash = hashing.digest(phone.key)
    profile["phone_number"] = phone.value
    profile["phone_number_verified"] = True
    user.profile = profile
    user.updated_at = next_version(user.updated_at)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        return None
    await events.emit_for(
        session,
        "user.updated",
        user,
        "user",
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
    )
    return user
