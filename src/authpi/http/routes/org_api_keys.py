"""API keys of an organization (core-api §B.2 rows 81-82, plus get, update, rotate and delete of
one key under the same path)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.routes.organizations import OrgId, load_org
from authpi.http.schemas.api_keys import (
    ApiKeyCreate,
    ApiKeyListItemOut,
    ApiKeyOut,
    ApiKeyUpdate,
    CreatedApiKeyOut,
    RotatedOut,
)
from authpi.http.schemas.common import ERRORS
from authpi.services import org_api_keys
from authpi.services.principal import Principal
from authpi.storage.tables.organizations import OrganizationApiKey

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/organizations/{org_id}/api-keys",
    tags=["organizations"],
)
KeyId = Annotated[str, Path(max_length=64, description="The API key ID")]
Reader = Annotated[Principal, Depends(require("issuers.organizations.api_keys:read"))]
Manager = Annotated[Principal, Depends(require("issuers.organizations.api_keys:manage"))]


@router.get("", response_model=Page[ApiKeyListItemOut], responses=ERRORS, summary="List API Keys")
async def list_keys(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Literal["active", "blocked", "revoked", "expired", "suspended"] | None = None,
    access: Annotated[str | None, Query(max_length=64, description="Reserved; ignored")] = None,
    readiness: Annotated[str | None, Query(max_length=64, description="Reserved; ignored")] = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    stmt = org_api_keys.list_statement(org_id, q, status)
    found = await keyset(session, stmt, OrganizationApiKey.id, paging)
    items = [ApiKeyListItemOut.of(row[0], org_id, issuer_id) for row in found.rows]
    return page(items, found.has_more, found.next_cursor)


@router.post(
    "", status_code=201, response_model=Envelope[CreatedApiKeyOut], responses=ERRORS, summary="Create API Key"
)
async def create_key(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: ApiKeyCreate,
    _: Manager,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    new = await org_api_keys.create_key(session, org, body.model_dump(exclude_unset=True))
    out = ApiKeyOut.of(new.key, org_id, issuer_id)
    return single(CreatedApiKeyOut(**out.model_dump(), secret_plain=new.secret), new.key.etag, status=201)


@router.get("/{key_id}", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Get API Key")
async def get_key(
    account_id: AccountId, issuer_id: IssuerId, org_id: OrgId, key_id: KeyId, _: Reader, session: Session
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    key = await org_api_keys.get_key(session, org_id, key_id)
    return single(ApiKeyOut.of(key, org_id, issuer_id), key.etag)


@router.patch("/{key_id}", response_model=Envelope[ApiKeyOut], responses=ERRORS, summary="Update API Key")
async def update_key(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    key_id: KeyId,
    body: ApiKeyUpdate,
    _: Manager,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    key = await org_api_keys.update_key(session, org, key_id, body.model_dump(exclude_unset=True), if_match)
    return single(ApiKeyOut.of(key, org_id, issuer_id), key.etag)


@router.post(
    "/{key_id}/rotate", response_model=Envelope[RotatedOut], responses=ERRORS, summary="Rotate API Key Secret"
)
async def rotate_key(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    key_id: KeyId,
    _: Manager,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    secret = await org_api_keys.rotate(session, org, key_id, if_match)
    key = await org_api_keys.get_key(session, org_id, key_id)
    return single(RotatedOut(secret_plain=secret), key.etag)


@router.delete("/{key_id}", status_code=204, responses=ERRORS, summary="Delete API Key")
async def delete_key(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    key_id: KeyId,
    _: Manager,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    await org_api_keys.delete_key(session, org, key_id, if_match)
    return no_content()
