"""Sign-up approvals of an issuer (core-api §B.2 rows 49-51)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Request
from fastapi.responses import Response
from pydantic import Field

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS, StrictInput
from authpi.http.schemas.users import UserListItemOut, UserOut
from authpi.services import approvals, issuers
from authpi.services.principal import Principal
from authpi.storage.tables.users import User

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/approvals", tags=["approvals"]
)
UserId = Annotated[str, Path(max_length=64, description="The pending user's ID")]
Reader = Annotated[Principal, Depends(require("issuers.approvals:read"))]
Writer = Annotated[Principal, Depends(require("issuers.approvals:write"))]


class ApprovalUpdate(StrictInput):
    """Approve (``status: active`` or ``decision: approve``) or reject (``blocked`` / ``reject``)."""

    status: Literal["active", "blocked"] | None = None
    decision: Literal["approve", "reject"] | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)


@router.get("", response_model=Page[UserListItemOut], responses=ERRORS, summary="List Pending Approvals")
async def list_approvals(
    account_id: AccountId,
    issuer_id: IssuerId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    found = await keyset(session, approvals.list_statement(issuer_id), User.id, paging, newest_first=False)
    return page([UserListItemOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.get("/{user_id}", response_model=Envelope[UserOut], responses=ERRORS, summary="Get Approval Details")
async def get_approval(
    account_id: AccountId, issuer_id: IssuerId, user_id: UserId, _: Reader, session: Session
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    user = await approvals.get(session, issuer_id, user_id)
    return single(UserOut.of(user), user.etag)


@router.patch("/{user_id}", response_model=Envelope[UserOut], responses=ERRORS, summary="Update Approval")
async def update_approval(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    body: ApprovalUpdate,
    principal: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    user = await approvals.decide(
        session, runtime(request).secretbox, issuer, user_id, changes, if_match, principal.key_id
    )
    return single(UserOut.of(user), user.etag)
