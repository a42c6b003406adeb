"""The account's event log (read-only): list, aggregate, get."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.events import EventOut, EventsAggregateOut
from authpi.services import events
from authpi.services.principal import Principal
from authpi.storage.tables.events import Event

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/events", tags=["events"])
Reader = Annotated[Principal, Depends(require("events:read"))]
Id = Annotated[str | None, Query(max_length=64)]
Millis = Annotated[float | None, Query(ge=0, le=1e15, description="Unix milliseconds (exclusive)")]


def filters(
    issuer_id: Id = None,
    user_id: Id = None,
    client_id: Id = None,
    event_types: Annotated[
        str | None,
        Query(max_length=8192, description="Comma-separated event types, e.g. user.created,user.deleted"),
    ] = None,
    after: Millis = None,
    before: Millis = None,
) -> events.Filters:
    return events.Filters(issuer_id, user_id, client_id, event_types, after, before)


Filtered = Annotated[events.Filters, Depends(filters)]


@router.get("", response_model=Page[EventOut], responses=ERRORS, summary="List Events")
async def list_events(
    account_id: AccountId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    where: Filtered,
) -> Response:
    found = await keyset(session, events.list_statement(account_id, where), Event.id, paging)
    return page([EventOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.get(
    "/aggregate", response_model=Envelope[EventsAggregateOut], responses=ERRORS, summary="Aggregate Events"
)
async def aggregate_events(
    account_id: AccountId,
    _: Reader,
    session: Session,
    where: Filtered,
    group_by: Annotated[
        str | None, Query(max_length=32, description="type, issuer_id, user_id or client_id")
    ] = None,
    interval: Annotated[str | None, Query(max_length=16, description="minute, hour or day")] = None,
    count_unique: Annotated[
        str | None, Query(max_length=32, description="user_id, client_id, issuer_id or type")
    ] = None,
) -> Response:
    buckets = await events.aggregate(
        session, account_id, where, group_by=group_by, interval=interval, count_unique=count_unique
    )
    out = EventsAggregateOut(interval=interval, group_by=group_by, buckets=buckets)
    return single(out, None)


@router.get("/{event_id}", response_model=Envelope[EventOut], responses=ERRORS, summary="Get Event")
async def get_event(
    account_id: AccountId,
    event_id: Annotated[str, Path(max_length=64, description="The event ID")],
    _: Reader,
    session: Session,
) -> Response:
    row = await events.get(session, account_id, event_id)
    return single(EventOut.of(row), None)
