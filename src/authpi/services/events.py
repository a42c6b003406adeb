"""The event log (§C.12): the one place where events are emitted, and the queries over them.

``emit`` adds the event row to the caller's session, so it commits (or rolls back) with the change
it records; a later consumer (a delivery per subscribed webhook) joins the same transaction here.
Who acted and the request's trace come from the request context (``act_as``, set once by the Core
guard and the IdP request path), not from every caller. ``data`` is a snapshot scrubbed of secrets
in one place (``scrub``), whatever the caller passes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.observability import request_id
from authpi.services import webhook_fanout
from authpi.services.errors import InvalidInput, NotFound
from authpi.services.event_types import LOGGED_EVENT_TYPES
from authpi.storage.tables.events import Event
from authpi.storage.tables.issuers import Issuer

SPEC = "1.0"
ID_PREFIX = "evt_"


# --- who acts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who causes the events of the current request or job."""

    trigger: str  # api | user | system
    source: str  # the emitting component
    account_id: str | None = None
    auth: dict[str, Any] = field(default_factory=dict)


SYSTEM = Actor(trigger="system", source="authpi")
_actor: ContextVar[Actor] = ContextVar("authpi_event_actor", default=SYSTEM)


def act_as(actor: Actor) -> None:
    """Names the actor of every event emitted from here on in this request (or task)."""
    _actor.set(actor)


def current_actor() -> Actor:
    return _actor.get()


def acting_for(actor: Actor) -> Token[Actor]:
    """``act_as`` for a whole request, undone with ``done``."""
    return _actor.set(actor)


def done(token: Token[Actor]) -> None:
    _actor.reset(token)


def identify(**ids_: str | None) -> None:
    """Adds who the request turned out to act for (a client, a user) to the current actor."""
    actor = current_actor()
    _actor.set(replace(actor, auth={**actor.auth, **{k: v for k, v in ids_.items() if v is not None}}))


def end_user(ip: str | None, user_agent: str | None) -> Actor:
    """The actor of an IdP request (a person's browser or their application); the account is the
    issuer's, found when an event is emitted."""
    return Actor(trigger="user", source="idp", auth={"ip": ip, "user_agent": user_agent})


# --- what may be said -------------------------------------------------------------------------------

# Keys whose values are credentials or derived from them: never part of an event. Matched on the
# lowercased key, so snapshots of any table are safe without listing their columns.
_SECRET_KEY = re.compile(
    r"(password|secret|_hash$|^hash$|cookie|^token$|_token$|^tokens$|^code$|_code$|verifier|private|"
    r"encrypted|nonce|jti)"
)
# Non-secret keys the pattern above would catch.
_ALLOWED = frozenset(
    {
        "secret_hint",
        "signature_secret_hint",
        "password_changed_at",
        "must_change_password",
        "code_challenge_method",
    }
)


def _secret(key: str) -> bool:
    lowered = key.lower()
    return lowered not in _ALLOWED and bool(_SECRET_KEY.search(lowered))


def scrub(value: Any) -> Any:
    """``value`` without credential fields at any depth, and without binary values (ciphertexts)."""
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items() if not _secret(str(k)) and not _binary(v)}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value if not _binary(item)]
    return value


def _binary(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview)


def snapshot(row: Any) -> dict[str, Any]:
    """A stored row as a plain dict of its columns (by column name); ``emit`` scrubs it."""
    mapper = inspect(row).mapper
    return {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}


# --- emitting ---------------------------------------------------------------------------------------


async def emit(
    session: AsyncSession,
    type: str,
    *,
    subject: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    account_id: str | None = None,
    issuer_id: str | None = None,
    user_id: str | None = None,
    client_id: str | None = None,
    trigger: str | None = None,
    actor: Actor | None = None,
    trace: str | None = None,
    at: int | None = None,
    batched: bool = False,
) -> Event:
    """Records ``type`` about ``subject`` in the caller's transaction (written, not committed).

    ``type`` is a webhook catalogue type or a log-only one (``event_types.LOG_ONLY``); only the
    former may ever be delivered (``event_types.deliverable``). ``actor``, ``trace`` and ``at``
    default to the current request's actor and ID and to now; a writer that emits later, outside the
    request (the machine-token buffer), passes what it captured, and ``batched`` when it emits many
    events in one transaction. The returned row is not part of the session.
    """
    row = await prepare(
        session,
        type,
        subject=subject,
        data=data,
        account_id=account_id,
        issuer_id=issuer_id,
        user_id=user_id,
        client_id=client_id,
        trigger=trigger,
        actor=actor,
        trace=trace,
        at=at,
    )
    return await record(session, row, batched=batched)


async def prepare(
    session: AsyncSession,
    type: str,
    *,
    subject: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    account_id: str | None = None,
    issuer_id: str | None = None,
    user_id: str | None = None,
    client_id: str | None = None,
    trigger: str | None = None,
    actor: Actor | None = None,
    trace: str | None = None,
    at: int | None = None,
) -> Event:
    """The event ``emit`` writes (same arguments), built but not written: snapshot and scrubbing are
    done here. A hot path whose transaction takes a write lock (SQLite's, held from its first
    write to its commit) prepares before its first write and ``record``s inside, so the lock is held
    for the statement only."""
    if type not in LOGGED_EVENT_TYPES:
        raise ValueError(f"not a catalogue event type: {type}")
    actor = actor or current_actor()
    # Emitting only adds rows: its reads must not flush the caller's pending changes, or a constraint
    # the caller means to meet at its own commit (a taken sign-up address) would fail in here.
    with session.no_autoflush:
        account = account_id or actor.account_id or await _account_of(session, issuer_id)
    at = at or now_ms()
    return Event(
        id=ids.ulid(ID_PREFIX, at),
        account_id=account,
        type=type,
        issuer_id=issuer_id,
        user_id=user_id,
        client_id=client_id,
        timestamp=at,
        trace=trace if trace is not None else request_id.current.get(),
        source=actor.source,
        trigger=trigger or actor.trigger,
        auth=scrub(actor.auth) or None,
        subject=scrub(dict(subject)),
        data=scrub(dict(data)) if data is not None else None,
    )


async def record(session: AsyncSession, row: Event, *, batched: bool = False) -> Event:
    """Writes a ``prepare``d event (and its deliveries) in the caller's transaction."""
    account = row.account_id
    with session.no_autoflush:
        if batched:
            # Written with the rest of the batch at the caller's flush (one multi-row INSERT); the
            # subscription version is read once per transaction.
            session.add(row)
            version = await _batch_version(session, account)
        else:
            # One statement writes the event and reads the account's subscription version.
            version = await session.scalar(
                insert(_EVENTS)
                .values({column: getattr(row, column) for column in _COLUMNS})
                .returning(webhook_fanout.version_of(account))
            )
        # Deliveries join the same transaction: the outbox and the log never disagree.
        await webhook_fanout.enqueue(session, row, version)
    return row


async def emit_for(
    session: AsyncSession,
    type: str,
    row: Any,
    kind: str,
    *,
    data: Mapping[str, Any] | None = None,
    **ids_: Any,
) -> Event:
    """``emit`` for a stored resource: its subject is ``{"type": kind, "id": row.id}`` and its data
    the row's scrubbed snapshot (unless ``data`` is given)."""
    return await record(session, await prepare_for(session, type, row, kind, data=data, **ids_))


async def prepare_for(
    session: AsyncSession,
    type: str,
    row: Any,
    kind: str,
    *,
    data: Mapping[str, Any] | None = None,
    **ids_: Any,
) -> Event:
    """``prepare`` for a stored resource (see ``emit_for``)."""
    return await prepare(
        session,
        type,
        subject={"type": kind, "id": row.id},
        data=snapshot(row) if data is None else data,
        **ids_,
    )


_EVENTS: Table = Event.__table__  # type: ignore[assignment]
_COLUMNS = tuple(column.key for column in _EVENTS.columns)


async def _batch_version(session: AsyncSession, account_id: str) -> int | None:
    """The account's subscription version, read once per transaction of a batch writer."""
    transaction = session.sync_session.get_transaction()
    seen = session.info.get("webhook_subscription_versions")
    if seen is None or seen[0] is not transaction:
        seen = session.info["webhook_subscription_versions"] = (transaction, {})
    versions: dict[str, int | None] = seen[1]
    if account_id not in versions:
        versions[account_id] = await webhook_fanout.read_version(session, account_id)
    return versions[account_id]


async def _account_of(session: AsyncSession, issuer_id: str | None) -> str:
    """The account of an issuer, for events of the IdP, which has no account in its context."""
    account = None
    if issuer_id is not None:
        account = await session.scalar(select(Issuer.account_id).where(Issuer.id == issuer_id))
    if account is None:
        raise ValueError("an event needs the account it belongs to")
    return account


# --- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    issuer_id: str | None = None
    user_id: str | None = None
    client_id: str | None = None
    event_types: str | None = None
    after: float | None = None
    before: float | None = None


def _types(raw: str) -> list[str]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if len(names) > len(LOGGED_EVENT_TYPES):
        limit = len(LOGGED_EVENT_TYPES)
        raise InvalidInput.on("event_types", "too_many", f"At most {limit} event types")
    return names


def _where(account_id: str, f: Filters) -> list[ColumnElement[bool]]:
    """Equality filters plus time as ID bounds (IDs are ULIDs of their millisecond)."""
    clauses: list[ColumnElement[bool]] = [Event.account_id == account_id]
    for column, value in (
        (Event.issuer_id, f.issuer_id),
        (Event.user_id, f.user_id),
        (Event.client_id, f.client_id),
    ):
        if value is not None:
            clauses.append(column == value)
    if f.event_types:
        clauses.append(Event.type.in_(_types(f.event_types)))
    if f.after is not None:  # strictly after: from the next whole millisecond
        clauses.append(Event.id >= ids.ulid(ID_PREFIX, max(0, math.floor(f.after) + 1), lowest=True))
    if f.before is not None:  # strictly before
        clauses.append(Event.id < ids.ulid(ID_PREFIX, max(0, math.ceil(f.before)), lowest=True))
    return clauses


def list_statement(account_id: str, f: Filters) -> Select[Any]:
    return select(Event).where(*_where(account_id, f))


async def get(session: AsyncSession, account_id: str, event_id: str) -> Event:
    row = await session.scalar(select(Event).where(Event.id == event_id, Event.account_id == account_id))
    if row is None:
        raise NotFound("Event")
    return row


INTERVALS_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
GROUPS = {
    "type": Event.type,
    "issuer_id": Event.issuer_id,
    "user_id": Event.user_id,
    "client_id": Event.client_id,
}
UNIQUE = {
    "user_id": Event.user_id,
    "client_id": Event.client_id,
    "issuer_id": Event.issuer_id,
    "type": Event.type,
}
MAX_BUCKETS = 10_000


def _choice(name: str, value: str | None, choices: Mapping[str, Any]) -> Any:
    if value is None:
        return None
    if value not in choices:
        allowed = ", ".join(choices)
        raise InvalidInput.on(name, "invalid_choice", f"{name} must be one of: {allowed}")
    return choices[value]


async def aggregate(
    session: AsyncSession,
    account_id: str,
    f: Filters,
    *,
    group_by: str | None,
    interval: str | None,
    count_unique: str | None,
) -> list[dict[str, Any]]:
    """Counts of the matching events: one total, or per time bucket and/or per group value, each
    with the number of distinct ``count_unique`` values when asked."""
    group = _choice("group_by", group_by, GROUPS)
    width = _choice("interval", interval, INTERVALS_MS)
    unique = _choice("count_unique", count_unique, UNIQUE)
    keys: list[Any] = []
    if width is not None:
        keys.append(((Event.timestamp // width) * width).label("timestamp"))
    if group is not None:
        keys.append(group.label(group_by or ""))
    measures: list[Any] = [func.count().label("count")]
    if unique is not None:
        measures.append(func.count(func.distinct(unique)).label("unique_count"))
    stmt = select(*keys, *measures).where(*_where(account_id, f))
    if keys:
        stmt = stmt.group_by(*keys).order_by(*keys).limit(MAX_BUCKETS)
    rows = (await session.execute(stmt)).mappings().all()
    return [
        {
            key: (int(value) if key in ("timestamp", "count", "unique_count") else value)
            for key, value in row.items()
        }
        for row in rows
    ]
