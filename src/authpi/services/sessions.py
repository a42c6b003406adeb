"""Sessions (idp-api §C.4): ``op`` sessions anchor a browser sign-in, ``rp`` sessions hold one
client's token family. Revoking an op session revokes its rp sessions and their refresh tokens;
suspending it holds them (their tokens are refused until the op session is reactivated)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from authpi import ids
from authpi.clock import next_version, now_ms
from authpi.crypto import hashing
from authpi.services import events, versions
from authpi.services.errors import Conflict, NotFound
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.oauth import RefreshToken
from authpi.storage.tables.sessions import Session, idle_deadline
from authpi.storage.tables.users import User

STATUSES = ("inactive", "active", "suspended", "revoked", "expired")
TERMINAL = ("revoked", "expired")
# Stored statuses of an op session under which none of its rp sessions' tokens may be used.
HOLDS_RP = ("suspended", *TERMINAL)


def _limits(issuer: Issuer) -> dict[str, int]:
    sessions: dict[str, int] = issuer.settings["access"]["sessions"]
    return sessions


def effective_status(row: Session, now: int | None = None) -> str:
    now = now or now_ms()
    if row.status in TERMINAL:
        return row.status
    if row.expires_at <= now:
        return "expired"
    last = row.last_activity_at or row.created_at
    if row.status == "active" and last + row.idle_timeout * 1000 <= now:
        return "expired"
    return row.status


def usable(row: Session, now: int | None = None) -> bool:
    return effective_status(row, now) in ("active", "inactive")


async def create_op_session(
    session: AsyncSession,
    issuer: Issuer,
    user_id: str,
    *,
    method: str,
    amr: list[str],
    device: dict[str, Any] | None,
    replaces: str | None = None,
) -> tuple[Session, str]:
    """A new browser session; returns it with the cookie secret (only its digest is stored).

    ``replaces`` is the cookie secret the browser presented, if any: that sign-in is superseded.
    """
    limits = _limits(issuer)
    # Sign-ins of one user take turns from here to the commit, so each one's cap check counts the
    # sessions the others created (PostgreSQL row lock; SQLite serialises writers anyway).
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    now = now_ms()
    secret = hashing.new_secret(nbytes=32)
    row = Session(
        id=ids.session_id(),
        issuer_id=issuer.id,
        user_id=user_id,
        type="op",
        status="active",
        status_at=now,
        authentication={"method": method, "amr": amr, "authenticated_at": now},
        device=device,
        ttl=limits["max_age"],
        idle_timeout=limits["idle_timeout"],
        auth_time=now // 1000,
        last_activity_at=now,
        expires_at=now + limits["max_age"] * 1000,
        cookie_digest=hashing.digest(secret),
        refresh_count=0,
        compromised=False,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    if replaces:
        await _supersede(session, issuer.id, replaces, row)
    await _enforce_cap(session, issuer.id, user_id, limits.get("max_per_user", 50))
    events.identify(user_id=user_id)
    await emit(session, "session.created", row, account_id=issuer.account_id)
    return row, secret


async def _supersede(session: AsyncSession, issuer_id: str, secret: str, successor: Session) -> None:
    """A browser that signs in again (prompt=login, max_age, another user) ends its previous op
    session, so the old cookie can never sign anyone in again. The same user's client sessions
    move to the new op session, so re-authenticating for one application does not sign the user
    out of the others and a later logout still reaches them; another user's end with the old one.
    A suspended op session is left to the administrator who suspended it."""
    old = await session.scalar(select(Session).where(Session.cookie_digest == hashing.digest(secret)))
    if old is None or old.issuer_id != issuer_id or old.type != "op" or old.status != "active":
        return
    if old.user_id == successor.user_id:
        now = now_ms()
        await session.execute(
            update(Session)
            .where(Session.op_session_id == old.id, Session.status.not_in(TERMINAL))
            .values(
                op_session_id=successor.id,
                # A new ETag, strictly greater than the old one (as next_version does per row).
                updated_at=case((Session.updated_at >= now, Session.updated_at + 1), else_=now),
            )
            .execution_options(synchronize_session=False)
        )
    await _end(session, old, "revoked", "superseded", None)


async def _enforce_cap(session: AsyncSession, issuer_id: str, user_id: str, cap: int) -> None:
    """At most ``cap`` live op sessions per user: the oldest beyond it expire. The caller holds the
    user's row lock, so no other sign-in of the user can add one until this transaction ends."""
    live = (
        await session.scalars(
            select(Session)
            .where(
                Session.issuer_id == issuer_id,
                Session.user_id == user_id,
                Session.type == "op",
                Session.status.in_(("active", "suspended")),
            )
            .order_by(Session.id.desc())
        )
    ).all()
    for old in live[cap:]:
        await _end(session, old, "expired", "session_limit", None)


async def find_by_cookie(session: AsyncSession, issuer_id: str, secret: str) -> Session | None:
    row = await session.scalar(select(Session).where(Session.cookie_digest == hashing.digest(secret)))
    if row is None or row.issuer_id != issuer_id or effective_status(row) != "active":
        return None
    return row


def touch(row: Session, now: int | None = None) -> None:
    row.last_activity_at = now or now_ms()


async def create_rp_session(session: AsyncSession, issuer: Issuer, op: Session, client_id: str) -> Session:
    """A client's session under ``op``; it never outlives the sign-in it came from."""
    limits = _limits(issuer)
    now = now_ms()
    row = Session(
        id=ids.session_id(),
        issuer_id=issuer.id,
        user_id=op.user_id,
        type="rp",
        op_session_id=op.id,
        client_id=client_id,
        status="inactive",
        status_at=now,
        authentication=op.authentication,
        device=op.device,
        ttl=limits["max_age"],
        idle_timeout=limits["idle_timeout"],
        auth_time=op.auth_time,
        last_activity_at=now,
        expires_at=min(now + limits["max_age"] * 1000, op.expires_at),
        refresh_count=0,
        compromised=False,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def get_anchored(session: AsyncSession, session_id: str) -> tuple[Session | None, bool]:
    """A session, and whether its op session lets it be used, read in one statement (this runs on
    every userinfo, introspection and refresh, so the op session is joined, not fetched).

    The op session holds its rp sessions while it is suspended, revoked or expired, or once its
    absolute lifetime is over; its idle timeout is not theirs (an application refreshing its
    tokens keeps its own session alive without the browser coming back). A session without an op
    session is its own anchor.
    """
    op = aliased(Session)
    found = (
        await session.execute(
            select(Session, op.status, op.expires_at)
            .outerjoin(op, op.id == Session.op_session_id)
            .where(Session.id == session_id)
        )
    ).first()
    if found is None:
        return None, False
    row, op_status, op_expires_at = found
    if row.op_session_id is None:
        return row, True
    return row, op_status is not None and op_status not in HOLDS_RP and op_expires_at > now_ms()


async def _end(session: AsyncSession, row: Session, status: str, reason: str | None, by: str | None) -> None:
    now = now_ms()
    row.status = status
    row.status_at = now
    row.status_reason = reason
    row.status_by = by
    if status == "revoked":
        row.revoked_at = now
        row.revoked_reason = reason
    row.updated_at = next_version(row.updated_at)
    family = [row.id]
    if row.type == "op":
        children = (
            await session.scalars(
                select(Session).where(Session.op_session_id == row.id, Session.status.not_in(TERMINAL))
            )
        ).all()
        for child in children:
            await _end(session, child, status, reason, by)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id.in_(family), RefreshToken.status == "active")
        .values(status="revoked")
    )


async def revoke(session: AsyncSession, row: Session, reason: str | None, by: str | None = None) -> None:
    if row.status not in TERMINAL:
        await _end(session, row, "revoked", reason, by)


async def mark_compromised(session: AsyncSession, row: Session, reason: str) -> None:
    now = now_ms()
    row.compromised = True
    row.compromised_at = now
    row.compromised_reason = reason
    await revoke(session, row, reason)
    await emit(session, "session.compromised", row)


async def emit(session: AsyncSession, kind: str, row: Session, *, account_id: str | None = None) -> None:
    await events.emit_for(
        session,
        kind,
        row,
        "session",
        account_id=account_id,
        issuer_id=row.issuer_id,
        user_id=row.user_id,
        client_id=row.client_id,
    )


# What each Core API action on a session is called in the event log.
ADMIN_EVENTS = {"revoke": "session.terminated", "suspend": "session.updated", "reactivate": "session.updated"}


def _lapsed(now: int) -> Any:
    """SQL twin of the time checks in ``effective_status``: past max age, or idle too long."""
    return (Session.expires_at <= now) | ((Session.status == "active") & (idle_deadline() <= now))


def list_statement(issuer_id: str, user_id: str | None = None, status: str | None = None) -> Select[Any]:
    """Sessions of an issuer (optionally one user's), filtered by their *effective* status."""
    stmt = select(Session).where(Session.issuer_id == issuer_id)
    if user_id is not None:
        stmt = stmt.where(Session.user_id == user_id)
    lapsed = _lapsed(now_ms())
    if status == "expired":
        stmt = stmt.where((Session.status == "expired") | (Session.status.not_in(TERMINAL) & lapsed))
    elif status in ("active", "inactive", "suspended"):
        stmt = stmt.where(Session.status == status, ~lapsed)
    elif status:
        stmt = stmt.where(Session.status == status)
    return stmt


async def revoke_all(
    session: AsyncSession,
    issuer_id: str,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
    reason: str,
    by: str | None = None,
) -> int:
    """Revoke every non-terminal session of a user or of a client (with their refresh tokens).

    The caller commits. Returns how many sessions were revoked.
    """
    stmt = select(Session).where(Session.issuer_id == issuer_id, Session.status.not_in(TERMINAL))
    if user_id is not None:
        stmt = stmt.where(Session.user_id == user_id)
    if client_id is not None:
        stmt = stmt.where(Session.client_id == client_id)
    # op before rp: revoking an op session already ends its rp sessions.
    rows = (await session.scalars(stmt.order_by(Session.type, Session.id))).all()
    count = 0
    for row in rows:
        if row.status not in TERMINAL:
            await _end(session, row, "revoked", reason, by)
            count += 1
    return count


async def get(session: AsyncSession, issuer_id: str, session_id: str, *, for_update: bool = False) -> Session:
    stmt = select(Session).where(Session.id == session_id, Session.issuer_id == issuer_id)
    if for_update:
        stmt = versions.for_update(stmt)
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound("Session")
    return row


async def admin_action(
    session: AsyncSession,
    issuer_id: str,
    session_id: str,
    action: str,
    if_match: str | None,
    reason: str | None = None,
    by: str | None = None,
) -> Session:
    """The Core API's revoke / suspend / reactivate."""
    row = await get(session, issuer_id, session_id, for_update=True)
    await versions.claim(session, row, "Session", if_match)
    current = effective_status(row)
    if action == "revoke":
        if current in TERMINAL:
            raise Conflict(f"The session is already {current}")
        await _end(session, row, "revoked", reason or "admin", by)
    elif action == "suspend":
        if current not in ("active", "inactive"):
            raise Conflict(f"A {current} session cannot be suspended")
        row.status, row.status_at, row.status_reason, row.status_by = "suspended", now_ms(), reason, by
    elif action == "reactivate":
        if current != "suspended":
            raise Conflict(f"Only a suspended session can be reactivated (this one is {current})")
        row.status, row.status_at, row.status_reason, row.status_by = "active", now_ms(), None, by
    await session.flush()
    await emit(session, ADMIN_EVENTS[action], row)
    return row
