"""Sessions (idp-api §C.4): ``op`` sessions anchor a browser sign-in, ``rp`` sessions hold one
client's token family. Revoking an op session revokes its rp sessions and their refresh tokens;
suspending it holds them (their tokens are refused until the op session is reactivated)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, case, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from authpi import ids
from authpi.clock import next_version, now_ms
from authpi.crypto import hashing
from authpi.services import events, versions
from authpi.services.errors import Conflict, NotFound
from authpi.storage.tables.events import Event
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
    return status_at_time(
        row.status, row.expires_at, row.last_activity_at, row.created_at, row.idle_timeout, now or now_ms()
    )


def status_at_time(
    status: str, expires_at: int, last_activity_at: int | None, created_at: int, idle_timeout: int, now: int
) -> str:
    """``effective_status`` from the columns themselves (for reads that select columns, not rows)."""
    if status in TERMINAL:
        return status
    if expires_at <= now:
        return "expired"
    last = last_activity_at or created_at
    if status == "active" and last + idle_timeout * 1000 <= now:
        return "expired"
    return status


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
    trusted_device_id: str | None = None,
) -> tuple[Session, str]:
    """A new browser session; returns it with the cookie secret (only its digest is stored).

    ``replaces`` is the cookie secret the browser presented, if any: that sign-in is superseded.
    ``trusted_device_id``: the trusted device that stood in for the second factor, recorded in the
    session's ``authentication`` (its ``amr`` stays what was actually proven).
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
        authentication={
            "method": method,
            "amr": amr,
            "authenticated_at": now,
            **({"trusted_device_id": trusted_device_id} if trusted_device_id else {}),
        },
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
        await _supersede(session, issuer.id, replaces, row, issuer.account_id)
    await _enforce_cap(session, issuer.id, user_id, limits.get("max_per_user", 50), issuer.account_id)
    events.identify(user_id=user_id)
    await emit(session, "session.created", row, account_id=issuer.account_id)
    return row, secret


async def _supersede(
    session: AsyncSession, issuer_id: str, secret: str, successor: Session, successor_account: str
) -> None:
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
    await end_many(session, [old], "revoked", "superseded", None, account_id=successor_account)


async def _enforce_cap(
    session: AsyncSession, issuer_id: str, user_id: str, cap: int, account_id: str
) -> None:
    """At most ``cap`` live op sessions per user: the oldest beyond it expire. The caller holds the
    user's row lock, so no other sign-in of the user can add one until this transaction ends."""
    # Only the sessions beyond the cap are loaded (usually none): a user who signs in often has up
    # to ``cap`` live ones, and loading them all on every sign-in, inside SQLite's write lock, was
    # the largest part of a login's database work.
    beyond = (
        await session.scalars(
            select(Session)
            .where(
                Session.issuer_id == issuer_id,
                Session.user_id == user_id,
                Session.type == "op",
                Session.status.in_(("active", "suspended")),
            )
            .order_by(Session.id.desc())
            .offset(cap)
        )
    ).all()
    # Evicted, not lapsed: ``session.terminated`` (reason session_limit), like every other ending.
    await end_many(session, list(beyond), "expired", "session_limit", None, account_id=account_id)


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


# The op session above an rp session, one alias for every statement: an alias built per call costs
# more than the query it joins (SQLAlchemy derives its columns and cache key anew each time).
OP_SESSION = aliased(Session, name="op_session")


async def get_anchored(session: AsyncSession, session_id: str) -> tuple[Session | None, bool]:
    """A session, and whether its op session lets it be used, read in one statement (this runs on
    every userinfo, introspection and refresh, so the op session is joined, not fetched).

    The op session holds its rp sessions while it is suspended, revoked or expired, or once its
    absolute lifetime is over; its idle timeout is not theirs (an application refreshing its
    tokens keeps its own session alive without the browser coming back). A session without an op
    session is its own anchor.
    """
    found = (
        await session.execute(
            select(Session, OP_SESSION.status, OP_SESSION.expires_at)
            .outerjoin(OP_SESSION, OP_SESSION.id == Session.op_session_id)
            .where(Session.id == session_id)
        )
    ).first()
    if found is None:
        return None, False
    row, op_status, op_expires_at = found
    return row, anchor_holds(row.op_session_id, op_status, op_expires_at)


def anchor_holds(op_session_id: str | None, op_status: str | None, op_expires_at: int | None) -> bool:
    """Whether the op session above an rp session (read by a join on ``OP_SESSION``) lets it be used."""
    if op_session_id is None:
        return True
    return (
        op_status is not None
        and op_status not in HOLDS_RP
        and op_expires_at is not None
        and op_expires_at > now_ms()
    )


# Ids per statement when a cascade touches many sessions (well under every driver's parameter cap).
_CHUNK = 1000


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


async def _end(session: AsyncSession, row: Session, status: str, reason: str | None, by: str | None) -> None:
    await end_many(session, [row], status, reason, by)


async def end_many(
    session: AsyncSession,
    rows: list[Session],
    status: str,
    reason: str | None,
    by: str | None,
    *,
    account_id: str | None = None,
) -> list[Session]:
    """End ``rows`` and every live client session under those that are browser sessions, with
    their refresh tokens, and record ``session.terminated`` for each session ended (its reason in
    ``data.reason``). A constant number of statements per 1,000 sessions, not one per session.
    Returns the sessions ended."""
    now = now_ms()
    ended = {row.id: row for row in rows if row.status not in TERMINAL}
    ops = [row.id for row in ended.values() if row.type == "op"]
    for chunk in _chunks(ops):
        children = await session.scalars(
            select(Session).where(Session.op_session_id.in_(chunk), Session.status.not_in(TERMINAL))
        )
        for child in children:
            ended.setdefault(child.id, child)
    for row in ended.values():
        row.status = status
        row.status_at = now
        row.status_reason = reason
        row.status_by = by
        if status == "revoked":
            row.revoked_at = now
            row.revoked_reason = reason
        row.updated_at = next_version(row.updated_at)
    for chunk in _chunks(list(ended)):
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id.in_(chunk), RefreshToken.status == "active")
            .values(status="revoked")
        )
    if ended:
        await session.flush()
        account_id = account_id or await _account(session, next(iter(ended.values())).issuer_id)
    for row in ended.values():
        await emit(session, "session.terminated", row, account_id=account_id, data={"reason": reason})
    return list(ended.values())


async def _account(session: AsyncSession, issuer_id: str) -> str | None:
    """The account events of ``issuer_id``'s sessions belong to, looked up once per cascade (the
    Core API knows it already; an IdP request does not)."""
    actor = events.current_actor()
    if actor.account_id is not None:
        return actor.account_id
    account: str | None = await session.scalar(select(Issuer.account_id).where(Issuer.id == issuer_id))
    return account


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


async def emit(
    session: AsyncSession,
    kind: str,
    row: Session,
    *,
    account_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """``kind`` about ``row``: its snapshot, plus ``data`` (e.g. why it ended)."""
    await events.record(session, await prepare_event(session, kind, row, account_id=account_id, data=data))


async def prepare_event(
    session: AsyncSession,
    kind: str,
    row: Session,
    *,
    account_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """The event ``emit`` writes, built now and written later with ``events.record`` (before a
    transaction's first write; ``data`` then carries what the row will say by then)."""
    return await events.prepare_for(
        session,
        kind,
        row,
        "session",
        data={**events.snapshot(row), **(data or {})},
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


def _lapsed_at(row: Session) -> int:
    """When a lapsed session's time ran out: its max age, or its idle timeout if that came first."""
    idle = (row.last_activity_at or row.created_at) + row.idle_timeout * 1000
    return min(row.expires_at, idle) if row.status == "active" else row.expires_at


async def expire_lapsed(session: AsyncSession, now: int, limit: int) -> int:
    """Store ``expired`` on up to ``limit`` sessions whose time ran out (past their max age, or an
    active one idle too long) and record ``session.expired`` for each (trigger ``system``); the
    caller commits. Requests already treat such sessions as expired (``effective_status``); this
    makes it a fact with an event. A browser session idle past its timeout whose client sessions
    have not ended is left alone: they live on their own activity and it anchors them. Returns how
    many sessions expired."""
    child = aliased(Session)
    anchors_live = (
        (Session.type == "op")
        & (Session.expires_at > now)
        & exists().where(child.op_session_id == Session.id, child.status.not_in(TERMINAL))
    )
    found = (
        await session.execute(
            select(Session, Issuer.account_id)
            .join(Issuer, Issuer.id == Session.issuer_id)
            .where(Session.status.not_in(TERMINAL), _lapsed(now), ~anchors_live)
            .order_by(Session.id)
            .limit(limit)
            .with_for_update(of=Session, skip_locked=True)
        )
    ).all()
    for row, _ in found:
        row.status_reason = "max_age" if row.expires_at <= now else "idle_timeout"
        row.status_at = _lapsed_at(row)
        row.status = "expired"
        row.updated_at = next_version(row.updated_at)
    await session.flush()
    for row, account_id in found:
        await emit(session, "session.expired", row, account_id=account_id, data={"reason": row.status_reason})
    return len(found)


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
    rows = list((await session.scalars(stmt.order_by(Session.type, Session.id))).all())
    return len(await end_many(session, rows, "revoked", reason, by))


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
    if action != "revoke":  # an ended session's session.terminated comes from end_many
        await emit(session, ADMIN_EVENTS[action], row)
    return row
