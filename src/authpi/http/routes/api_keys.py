from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, Session
from authpi.http.schemas.api_keys import (
    ApiKeyCreate,
    ApiKeyListItemOut,
    ApiKeyOut,
    ApiKeyUpdate,
    CreatedApiKeyOut,
    RotatedOut,
    RotateIn,
)
from authpi.http.schemas.common import ERRORS, ReasonInput
from authpi.services import accounts, api_keys
from authpi.services.principal import Principal
from authpi.storage.tables.api_keys import ApiKey

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/api-keys", tags=["api-keys"])
KeyId = Annotated[str, Path(max_length=64, description="The API key ID")]
Reader = Annotated[Principal, Depends(require("api_keys:read"))]
Writer = Annotated[Principal, Depends(require("api_keys:write"))]


async def _out(session: Session, key: ApiKey, principal: Principal) -> ApiKeyOut:
    return ApiKeyOut.of(key, principal.org_id, await accounts.platform_issuer_id(session))


@router.get("", response_model=Page[ApiKeyListItemOut], responses=ERRORS, summary="List Account API Keys")
async def list_keys(
    account_id: AccountId,
    principal: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Literal["active", "blocked", "revoked", "expired", "suspended"] | None = None,
    access: Annotated[str | None, Query(max_length=64, description="Reserved; ignored")] = None,
    readiness: Annotated[str | None, Query(max_length=64, description="Reserved; ignored")] = None,
) -> Response:
    found = await keyset(session, api_keys.list_statement(account_id, q, status), ApiKey.id, paging)
    issuer_id = await accounts.platform_issuer_id(session)
    items = [ApiKeyListItemOut.of(row[0], principal.org_id, issuer_id) for row in found.rows]
    return page(items, found.has_more, found.next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[CreatedApiKeyOut],
    responses=ERRORS,
    summary="Create Account API Key",
)
async def create_key(
    account_id: AccountId,
    body: ApiKeyCreate,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    data = body.model_dump(exclude_unset=True)
    new = await api_keys.create_key(
        session,
        account_id,
        name=body.name,
        restrictions=data["restrictions"],
        description=body.description,
        tags=body.tags,
        expires_at=body.expires_at,
        metadata=body.metadata,
        secret=body.secret,
        secret_hint=body.secret_hint,
        grantor=principal,
    )
    out = await _out(session, new.key, principal)
    created = CreatedApiKeyOut(**out.model_dump(), secret_plain=new.secret)
    return single(created, new.key.etag, status=201)


@router.get("/{key_id}", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Get API Key")
async def get_key(account_id: AccountId, key_id: KeyId, principal: Reader, session: Session) -> Response:
    key = await api_keys.get_key(session, account_id, key_id)
    return single(await _out(session, key, principal), key.etag)


@router.patch("/{key_id}", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Update API Key")
async def update_key(
    account_id: AccountId,
    key_id: KeyId,
    body: ApiKeyUpdate,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    key = await api_keys.update_key(session, account_id, key_id, changes, if_match, principal)
    return single(await _out(session, key, principal), key.etag)


@router.delete("/{key_id}", status_code=204, responses=ERRORS, summary="Delete API Key")
async def delete_key(
    account_id: AccountId,
    key_id: KeyId,
    _: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await api_keys.delete_key(session, account_id, key_id, if_match)
    return no_content()


async def _status_action(
    session: Session,
    principal: Principal,
    account_id: str,
    key_id: str,
    target: str,
    body: ReasonInput | None,
    if_match: str | None,
) -> Response:
    key = await api_keys.set_status(
        session,
        account_id,
        key_id,
        target,
        if_match,
        reason=body.reason if body else None,
        by=(body.by if body else None) or principal.key_id,
        grantor=principal,
    )
    return single(await _out(session, key, principal), key.etag)


@router.post("/{key_id}/block", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Block API Key")
async def block_key(
    account_id: AccountId,
    key_id: KeyId,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    body: ReasonInput | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _status_action(session, principal, account_id, key_id, "blocked", body, if_match)


@router.post(
    "/{key_id}/unblock", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Unblock API Key"
)
async def unblock_key(
    account_id: AccountId,
    key_id: KeyId,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _status_action(session, principal, account_id, key_id, "active", None, if_match)


@router.post(
    "/{key_id}/revoke", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Revoke API Key"
)
async def revoke_key(
    account_id: AccountId,
    key_id: KeyId,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    body: ReasonInput | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _status_action(session, principal, account_id, key_id, "revoked", body, if_match)


@router.post(
    "/{key_id}/rotate", response_model=Envelope[RotatedOut], responses=ERRORS, summary="Rotate API Key Secret"
)
async def rotate_key(
    account_id: AccountId,
    key_id: KeyId,
    principal: Annotated[Principal, Depends(require("api_keys:manage"))],
    session: Session,
    body: RotateIn | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    secret = await api_keys.rotate(
        session, account_id, key_id, if_match, body.secret if body else None, principal
    )
    key = await api_keys.get_key(session, account_id, key_id)
    return single(RotatedOut(secret_plain=secret), key.etag)
