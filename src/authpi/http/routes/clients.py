from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.clients import (
    ClientCreate,
    ClientListItemOut,
    ClientOut,
    ClientStatus,
    ClientUpdate,
    CreatedClientOut,
    SecretOut,
)
from authpi.http.schemas.common import ERRORS
from authpi.services import clients, issuers
from authpi.services.principal import Principal
from authpi.storage.tables.clients import Client

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/clients", tags=["clients"])
ClientId = Annotated[str, Path(max_length=64, description="The client ID")]
Reader = Annotated[Principal, Depends(require("issuers.clients:read"))]
Writer = Annotated[Principal, Depends(require("issuers.clients:write"))]


@router.get("", response_model=Page[ClientListItemOut], responses=ERRORS, summary="List Clients")
async def list_clients(
    account_id: AccountId,
    issuer_id: IssuerId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    q: Annotated[str | None, Query(max_length=200, description="Matches the name or the exact ID")] = None,
    name: Annotated[str | None, Query(max_length=200, description="Case-insensitive name contains")] = None,
    status: Annotated[ClientStatus | None, Query(description="Default: all but deleted")] = None,
    application_type: Annotated[
        str | None, Query(max_length=16, description="web | native, or a client type (spa, m2m)")
    ] = None,
    readiness: Annotated[str | None, Query(max_length=64, description="Reserved; ignored")] = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    stmt = clients.list_statement(issuer_id, q=q, name=name, status=status, application_type=application_type)
    found = await keyset(session, stmt, Client.id, paging)
    return page([ClientListItemOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[CreatedClientOut],
    responses=ERRORS,
    summary="Create Client",
)
async def create_client(
    account_id: AccountId,
    issuer_id: IssuerId,
    body: ClientCreate,
    _: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    new = await clients.create_client(session, issuer_id, body.model_dump(exclude_unset=True))
    return single(CreatedClientOut.created(new), new.client.etag, status=201)


@router.get("/{client_id}", response_model=Envelope[ClientOut], responses=ERRORS, summary="Get Client")
async def get_client(
    account_id: AccountId, issuer_id: IssuerId, client_id: ClientId, _: Reader, session: Session
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    client = await clients.get_client(session, issuer_id, client_id)
    return single(ClientOut.of(client), client.etag)


@router.patch("/{client_id}", response_model=Envelope[ClientOut], responses=ERRORS, summary="Update Client")
async def update_client(
    account_id: AccountId,
    issuer_id: IssuerId,
    client_id: ClientId,
    body: ClientUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    changes = body.model_dump(exclude_unset=True)
    client = await clients.update_client(session, issuer_id, client_id, changes, if_match)
    return single(ClientOut.of(client), client.etag)


@router.delete("/{client_id}", status_code=204, responses=ERRORS, summary="Delete Client (soft)")
async def delete_client(
    account_id: AccountId,
    issuer_id: IssuerId,
    client_id: ClientId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await clients.delete_client(session, issuer_id, client_id, if_match)
    return no_content()


@router.post(
    "/{client_id}/secret/rotate",
    response_model=Envelope[SecretOut],
    responses=ERRORS,
    summary="Rotate Client Secret",
)
async def rotate_secret(
    account_id: AccountId,
    issuer_id: IssuerId,
    client_id: ClientId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    client, secret = await clients.rotate_secret(session, issuer_id, client_id, if_match)
    return single(SecretOut(secret=secret), client.etag)
