"""Sessions of an issuer, and of one user. Sessions are created by sign-in at the IdP, never here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.clock import now_ms
from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS, ReasonInput
from authpi.http.schemas.sessions import PublicSessionOut, SessionStatus
from authpi.services import issuers, sessions, users
from authpi.services.principal import Principal
from authpi.storage.tables.sessions import Session as SessionRow

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/issuers/{issuer_id}", tags=["sessions"])
SessionId = Annotated[str, Path(max_length=64, description="The session ID")]
UserId = Annotated[str, Path(max_length=64, description="The user ID")]
Reader = Annotated[Principal, Depends(require("issuers.sessions:read"))]
Writer = Annotated[Principal, Depends(require("issuers.sessions:write"))]
UserSessionsReader = Annotated[Principal, Depends(require("issuers.users.sessions:read"))]


@router.get(
    "/users/{user_id}/sessions",
    response_model=Page[PublicSessionOut],
    responses=ERRORS,
    summary="List User Sessions",
)
async def list_user_sessions(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    _: UserSessionsReader,
    session: Session,
    status: SessionStatus | None = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await users.get_user(session, issuer_id, user_id)
    stmt = sessions.list_statement(issuer_id, user_id=user_id, status=status).order_by(SessionRow.id.desc())
    rows = (await session.scalars(stmt)).all()
    now = now_ms()
    # Not paginated: the SDK's list_all() never forwards a cursor (A.7).
    return page([PublicSessionOut.of(row, now) for row in rows], False, None)


@router.get("/sessions", response_model=Page[PublicSessionOut], responses=ERRORS, summary="List Sessions")
async def list_sessions(
    account_id: AccountId,
    issuer_id: IssuerId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: SessionStatus | None = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    stmt = sessions.list_statement(issuer_id, user_id=user_id, status=status)
    found = await keyset(session, stmt, SessionRow.id, paging)
    now = now_ms()
    return page([PublicSessionOut.of(row[0], now) for row in found.rows], found.has_more, found.next_cursor)


@router.get(
    "/sessions/{session_id}",
    response_model=Envelope[PublicSessionOut],
    responses=ERRORS,
    summary="Get Session",
)
async def get_session(
    account_id: AccountId, issuer_id: IssuerId, session_id: SessionId, _: Reader, session: Session
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    row = await sessions.get(session, issuer_id, session_id)
    return single(PublicSessionOut.of(row), row.etag)


async def _act(
    session: Session,
    principal: Principal,
    account_id: str,
    issuer_id: str,
    session_id: str,
    action: str,
    body: ReasonInput | None,
    if_match: str | None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    row = await sessions.admin_action(
        session,
        issuer_id,
        session_id,
        action,
        if_match,
        reason=body.reason if body else None,
        by=(body.by if body else None) or principal.key_id,
    )
    return single(PublicSessionOut.of(row), row.etag)


@router.post(
    "/sessions/{session_id}/revoke",
    response_model=Envelope[PublicSessionOut],
    responses=ERRORS,
    summary="Revoke Session",
)
async def revoke_session(
    account_id: AccountId,
    issuer_id: IssuerId,
    session_id: SessionId,
    principal: Writer,
    session: Session,
    body: ReasonInput | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _act(session, principal, account_id, issuer_id, session_id, "revoke", body, if_match)


@router.post(
    "/sessions/{session_id}/suspend",
    response_model=Envelope[PublicSessionOut],
    responses=ERRORS,
    summary="Suspend Session",
)
async def suspend_session(
    account_id: AccountId,
    issuer_id: IssuerId,
    session_id: SessionId,
    principal: Writer,
    session: Session,
    body: ReasonInput | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _act(session, principal, account_id, issuer_id, session_id, "suspend", body, if_match)


@router.post(
    "/sessions/{session_id}/reactivate",
    response_model=Envelope[PublicSessionOut],
    responses=ERRORS,
    summary="Reactivate Session",
)
async def reactivate_session(
    account_id: AccountId,
    issuer_id: IssuerId,
    session_id: SessionId,
    principal: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _act(session, principal, account_id, issuer_id, session_id, "reactivate", None, if_match)
