from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.auth_methods import AuthMethodCreate, AuthMethodOut, AuthMethodUpdate
from authpi.http.schemas.common import ERRORS
from authpi.runtime import Runtime
from authpi.services import auth_methods, issuers
from authpi.services.principal import Principal

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/auth-methods", tags=["auth-methods"]
)
MethodId = Annotated[str, Path(max_length=64, description="The auth method ID")]
Reader = Annotated[Principal, Depends(require("issuers.auth_methods:read"))]
Writer = Annotated[Principal, Depends(require("issuers.auth_methods:write"))]
Rt = Annotated[Runtime, Depends(runtime)]


@router.get("", response_model=Page[AuthMethodOut], responses=ERRORS, summary="List Auth Methods")
async def list_methods(account_id: AccountId, issuer_id: IssuerId, _: Reader, session: Session) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    rows = await auth_methods.list_methods(session, issuer_id)
    # Not paginated: the SDK's list_all() never forwards a cursor (A.7).
    return page([AuthMethodOut.of(row) for row in rows], False, None)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[AuthMethodOut],
    responses=ERRORS,
    summary="Create Auth Method",
)
async def create_method(
    account_id: AccountId,
    issuer_id: IssuerId,
    body: AuthMethodCreate,
    _: Writer,
    session: Session,
    rt: Rt,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    data = auth_methods.MethodInput(
        method=body.method,
        name=body.name,
        first_factor_only=body.first_factor_only,
        settings=body.settings,
        enabled_login=body.enabled_login,
        enabled_signup=body.enabled_signup,
        featured=body.featured,
    )
    row = await auth_methods.create_method(session, rt.secretbox, issuer_id, data)
    return single(AuthMethodOut.of(row), row.etag, status=201)


@router.get(
    "/{method_id}", response_model=Envelope[AuthMethodOut], responses=ERRORS, summary="Get Auth Method"
)
async def get_method(
    account_id: AccountId, issuer_id: IssuerId, method_id: MethodId, _: Reader, session: Session
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    row = await auth_methods.get_method(session, issuer_id, method_id)
    return single(AuthMethodOut.of(row), row.etag)


@router.patch(
    "/{method_id}", response_model=Envelope[AuthMethodOut], responses=ERRORS, summary="Update Auth Method"
)
async def update_method(
    account_id: AccountId,
    issuer_id: IssuerId,
    method_id: MethodId,
    body: AuthMethodUpdate,
    _: Writer,
    session: Session,
    rt: Rt,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    changes = body.model_dump(exclude_unset=True)
    row = await auth_methods.update_method(session, rt.secretbox, issuer_id, method_id, changes, if_match)
    return single(AuthMethodOut.of(row), row.etag)


@router.delete("/{method_id}", status_code=204, responses=ERRORS, summary="Delete Auth Method")
async def delete_method(
    account_id: AccountId,
    issuer_id: IssuerId,
    method_id: MethodId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await auth_methods.delete_method(session, issuer_id, method_id, if_match)
    return no_content()
