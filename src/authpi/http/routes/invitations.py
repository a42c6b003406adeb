"""Invitations of an organization (core-api §B.2 rows 88-93)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Request
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.routes.organizations import OrgId
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.organizations import InvitationCreate, InvitationOut, InvitationUpdate
from authpi.services import invitations, issuers, organizations
from authpi.services.principal import Principal
from authpi.storage.tables.organizations import Invitation

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/organizations/{org_id}/invitations",
    tags=["organizations"],
)
InvitationId = Annotated[str, Path(max_length=64, description="The invitation ID")]
Reader = Annotated[Principal, Depends(require("issuers.organizations.invitations:read"))]
Writer = Annotated[Principal, Depends(require("issuers.organizations.invitations:write"))]


def _issuer_url(request: Request, issuer_id: str) -> str:
    return f"{runtime(request).settings.public_url_base}/{issuer_id}"


@router.get("", response_model=Page[InvitationOut], responses=ERRORS, summary="List Invitations")
async def list_invitations(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: Literal["pending", "accepted", "declined", "revoked", "expired"] | None = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await organizations.get(session, issuer_id, org_id)
    found = await keyset(session, invitations.list_statement(org_id, status), Invitation.id, paging)
    return page([InvitationOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post(
    "", status_code=201, response_model=Envelope[InvitationOut], responses=ERRORS, summary="Create Invitation"
)
async def create_invitation(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: InvitationCreate,
    principal: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    org = await organizations.get(session, issuer_id, org_id)
    data = body.model_dump(exclude_unset=True)
    invitation = await invitations.create(
        session, runtime(request).secretbox, issuer, org, data, _issuer_url(request, issuer_id)
    )
    return single(InvitationOut.of(invitation), invitation.etag, status=201)


@router.get(
    "/{invitation_id}", response_model=Envelope[InvitationOut], responses=ERRORS, summary="Get Invitation"
)
async def get_invitation(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    invitation_id: InvitationId,
    _: Reader,
    session: Session,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await organizations.get(session, issuer_id, org_id)
    invitation = await invitations.get(session, org_id, invitation_id)
    return single(InvitationOut.of(invitation), invitation.etag)


@router.patch(
    "/{invitation_id}", response_model=Envelope[InvitationOut], responses=ERRORS, summary="Update Invitation"
)
async def update_invitation(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    invitation_id: InvitationId,
    body: InvitationUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await organizations.get(session, issuer_id, org_id)
    changes = body.model_dump(exclude_unset=True)
    invitation = await invitations.update_invitation(session, org_id, invitation_id, changes, if_match)
    return single(InvitationOut.of(invitation), invitation.etag)


@router.post(
    "/{invitation_id}/resend",
    response_model=Envelope[InvitationOut],
    responses=ERRORS,
    summary="Resend Invitation",
)
async def resend_invitation(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    invitation_id: InvitationId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    org = await organizations.get(session, issuer_id, org_id)
    invitation = await invitations.resend(
        session,
        runtime(request).secretbox,
        issuer,
        org,
        invitation_id,
        if_match,
        _issuer_url(request, issuer_id),
    )
    return single(InvitationOut.of(invitation), invitation.etag)


@router.post(
    "/{invitation_id}/revoke",
    response_model=Envelope[InvitationOut],
    responses=ERRORS,
    summary="Revoke Invitation",
)
async def revoke_invitation(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    invitation_id: InvitationId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await organizations.get(session, issuer_id, org_id)
    invitation = await invitations.revoke(session, org_id, invitation_id, if_match)
    return single(InvitationOut.of(invitation), invitation.etag)
