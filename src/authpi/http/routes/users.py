from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.users import (
    UserCreate,
    UserListItemOut,
    UserOut,
    UserStatus,
    UserUpdate,
    user_body,
)
from authpi.services import issuers, users
from authpi.services.principal import Principal
from authpi.storage.tables.base import etag_of
from authpi.storage.tables.users import User

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/users", tags=["users"])
UserId = Annotated[str, Path(max_length=64, description="The user ID")]
Reader = Annotated[Principal, Depends(require("issuers.users:read"))]
Writer = Annotated[Principal, Depends(require("issuers.users:write"))]


@router.get("", response_model=Page[UserListItemOut], responses=ERRORS, summary="List Users")
async def list_users(
    account_id: AccountId,
    issuer_id: IssuerId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: Annotated[UserStatus | None, Query(description="Default: all but deleted")] = None,
    q: Annotated[str | None, Query(max_length=320, description="The exact username or user ID")] = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    found = await keyset(session, users.list_statement(issuer_id, q=q, status=status), User.id, paging)
    return page([UserListItemOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post("", status_code=201, response_model=Envelope[UserOut], responses=ERRORS, summary="Create User")
async def create_user(
    account_id: AccountId,
    issuer_id: IssuerId,
    body: UserCreate,
    _: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    user = await users.create_user(session, issuer_id, body.model_dump(exclude_unset=True))
    return single(UserOut.of(user), user.etag, status=201)


@router.get("/{user_id}", response_model=Envelope[UserOut], responses=ERRORS, summary="Get User")
async def get_user(
    account_id: AccountId, issuer_id: IssuerId, user_id: UserId, _: Reader, session: Session
) -> Response:
    row = await users.read_user(session, account_id, issuer_id, user_id)
    return single(user_body(row), etag_of(row.updated_at))


@router.patch("/{user_id}", response_model=Envelope[UserOut], responses=ERRORS, summary="Update User")
async def update_user(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    body: UserUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    changes = body.model_dump(exclude_unset=True)
    user = await users.update_user(session, issuer_id, user_id, changes, if_match)
    return single(UserOut.of(user), user.etag)


@router.delete("/{user_id}", status_code=204, responses=ERRORS, summary="Delete User (soft)")
async def delete_user(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await users.delete_user(session, issuer_id, user_id, if_match)
    return no_content()
