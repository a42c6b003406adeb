"""Account notes: list, create, backlinks, count, get, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset_by, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.notes import (
    BacklinksOut,
    NoteCreate,
    NoteOut,
    NotesCountOut,
    NoteUpdate,
    RefType,
    SubjectType,
)
from authpi.services import notes
from authpi.services.principal import Principal

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/notes", tags=["notes"])
NoteId = Annotated[str, Path(max_length=64, description="The note ID")]
Reader = Annotated[Principal, Depends(require("notes:read"))]
Writer = Annotated[Principal, Depends(require("notes:write"))]
Id = Annotated[str | None, Query(max_length=64)]


def filters(
    subject_type: SubjectType | None = None,
    subject_id: Annotated[str | None, Query(max_length=64, description="Requires subject_type")] = None,
    issuer_id: Annotated[
        str | None, Query(max_length=64, description="Required for user and org subjects")
    ] = None,
    created_by: Annotated[
        str | None, Query(max_length=64, description="ID of the API key that wrote it")
    ] = None,
    pinned: bool | None = None,
    mentions_user_id: Id = None,
) -> notes.Filters:
    return notes.Filters(subject_type, subject_id, issuer_id, created_by, pinned, mentions_user_id)


@router.get("", response_model=Page[NoteOut], responses=ERRORS, summary="List Notes")
async def list_notes(
    account_id: AccountId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    where: Annotated[notes.Filters, Depends(filters)],
) -> Response:
    stmt = notes.list_statement(account_id, where)
    after = notes.after_cursor(paging.cursor)
    found = await keyset_by(session, stmt, notes.ORDER, after, paging.limit, notes.cursor_of)
    views = await notes.with_links(session, [row[0] for row in found.rows])
    return page([NoteOut.of(view) for view in views], found.has_more, found.next_cursor)


@router.post("", status_code=201, response_model=Envelope[NoteOut], responses=ERRORS, summary="Create Note")
async def create_note(
    account_id: AccountId,
    body: NoteCreate,
    principal: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    view = await notes.create_note(
        session,
        account_id,
        principal.key_id,
        subject_type=body.subject_type,
        subject_id=body.subject_id,
        issuer_id=body.issuer_id,
        content=body.content,
        pinned=body.pinned,
    )
    return single(NoteOut.of(view), view.note.etag, status=201)


@router.get("/backlinks", response_model=BacklinksOut, responses=ERRORS, summary="Get Note Backlinks")
async def note_backlinks(
    account_id: AccountId,
    _: Reader,
    session: Session,
    ref_type: RefType,
    ref_id: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum number of notes (1-100)")] = 50,
) -> Response:
    views = await notes.backlinks(session, account_id, ref_type, ref_id, limit)
    return JSONResponse(BacklinksOut(data=[NoteOut.of(view) for view in views]).model_dump(mode="json"))


@router.get("/count", response_model=Envelope[NotesCountOut], responses=ERRORS, summary="Count Notes")
async def count_notes(
    account_id: AccountId,
    _: Reader,
    session: Session,
    subject_type: SubjectType,
    subject_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> Response:
    found = await notes.count(session, account_id, subject_type, subject_id)
    return single(NotesCountOut(count=found), None)


@router.get("/{note_id}", response_model=Envelope[NoteOut], responses=ERRORS, summary="Get Note")
async def get_note(account_id: AccountId, note_id: NoteId, _: Reader, session: Session) -> Response:
    view = await notes.get_note(session, account_id, note_id)
    return single(NoteOut.of(view), view.note.etag)


@router.patch("/{note_id}", response_model=Envelope[NoteOut], responses=ERRORS, summary="Update Note")
async def update_note(
    account_id: AccountId,
    note_id: NoteId,
    body: NoteUpdate,
    principal: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    view = await notes.update_note(session, account_id, note_id, changes, if_match, principal.key_id)
    return single(NoteOut.of(view), view.note.etag)


@router.delete("/{note_id}", status_code=204, responses=ERRORS, summary="Delete Note")
async def delete_note(
    account_id: AccountId,
    note_id: NoteId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await notes.delete_note(session, account_id, note_id, if_match)
    return no_content()
