"""Organizations of an issuer, with their members and groups (core-api §B.2 rows 63-67, 83-87, 94-97)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.organizations import (
    GroupCreate,
    GroupOut,
    GroupUpdate,
    MemberCreate,
    MemberOut,
    MemberUpdate,
    OrganizationCreate,
    OrganizationListItemOut,
    OrganizationOut,
    OrganizationUpdate,
    OrgStatus,
)
from authpi.services import issuers, organizations
from authpi.services.principal import Principal
from authpi.storage.tables.organizations import Group, Membership, Organization

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/organizations", tags=["organizations"]
)
OrgId = Annotated[str, Path(max_length=64, description="The organization ID")]
GroupId = Annotated[str, Path(max_length=64, description="The group ID")]
MemberId = Annotated[str, Path(max_length=64, description="The member's user ID")]
Bool = Literal["true", "false"]
Reader = Annotated[Principal, Depends(require("issuers.organizations:read"))]
Writer = Annotated[Principal, Depends(require("issuers.organizations:write"))]
MemberReader = Annotated[Principal, Depends(require("issuers.organizations.members:read"))]
MemberWriter = Annotated[Principal, Depends(require("issuers.organizations.members:write"))]
GroupReader = Annotated[Principal, Depends(require("issuers.organizations.groups:read"))]
GroupWriter = Annotated[Principal, Depends(require("issuers.organizations.groups:write"))]


async def load_org(session: Session, account_id: str, issuer_id: str, org_id: str) -> Organization:
    """The organization, after the issuer is found to belong to the caller's account."""
    await issuers.get_issuer(session, account_id, issuer_id)
    return await organizations.get(session, issuer_id, org_id)


def _flag(value: Bool | None) -> bool | None:
    return None if value is None else value == "true"


@router.get("", response_model=Page[OrganizationListItemOut], responses=ERRORS, summary="List Organizations")
async def list_organizations(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: Annotated[OrgStatus | None, Query(description="Default: all but deleting")] = None,
    sso_enabled: Bool | None = None,
    sso_only: Bool | None = None,
    mfa_required: Bool | None = None,
    invitation_enabled: Bool | None = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    flags = {
        "sso_enabled": _flag(sso_enabled),
        "sso_only": _flag(sso_only),
        "mfa_required": _flag(mfa_required),
        "invitation_enabled": _flag(invitation_enabled),
    }
    stmt = organizations.list_statement(issuer_id, status, flags)
    found = await keyset(session, stmt, Organization.id, paging)
    base = runtime(request).settings.public_url_base
    items = [OrganizationListItemOut.of(row[0], base) for row in found.rows]
    return page(items, found.has_more, found.next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[OrganizationOut],
    responses=ERRORS,
    summary="Create Organization",
)
async def create_organization(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    body: OrganizationCreate,
    _: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    rt = runtime(request)
    org = await organizations.create(session, rt.secretbox, issuer_id, body.model_dump(exclude_unset=True))
    return single(OrganizationOut.of(org, rt.settings.public_url_base), org.etag, status=201)


@router.get(
    "/{org_id}", response_model=Envelope[OrganizationOut], responses=ERRORS, summary="Get Organization"
)
async def get_organization(
    request: Request, account_id: AccountId, issuer_id: IssuerId, org_id: OrgId, _: Reader, session: Session
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    return single(OrganizationOut.of(org, runtime(request).settings.public_url_base), org.etag)


@router.patch(
    "/{org_id}", response_model=Envelope[OrganizationOut], responses=ERRORS, summary="Update Organization"
)
async def update_organization(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: OrganizationUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    changes = body.model_dump(exclude_unset=True)
    rt = runtime(request)
    org = await organizations.update_org(session, rt.secretbox, issuer_id, org_id, changes, if_match)
    return single(OrganizationOut.of(org, rt.settings.public_url_base), org.etag)


@router.delete("/{org_id}", status_code=204, responses=ERRORS, summary="Delete Organization")
async def delete_organization(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await issuers.get_issuer(session, account_id, issuer_id)
    await organizations.delete_org(session, issuer_id, org_id, if_match)
    return no_content()


# --- members ---------------------------------------------------------------------------------------


@router.get(
    "/{org_id}/members",
    response_model=Page[MemberOut],
    responses=ERRORS,
    summary="List Organization Members",
)
async def list_members(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: MemberReader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: Literal["active", "suspended"] | None = None,
    scope: Annotated[str | None, Query(max_length=200, description="An effective scope members hold")] = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    found = await keyset(
        session, organizations.members_statement(org_id, status, scope), Membership.id, paging
    )
    members = await organizations.members_of(session, [row[0] for row in found.rows])
    return page([MemberOut.of(m) for m in members], found.has_more, found.next_cursor)


@router.post(
    "/{org_id}/members",
    status_code=201,
    response_model=Envelope[MemberOut],
    responses=ERRORS,
    summary="Add Organization Member",
)
async def add_member(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: MemberCreate,
    _: MemberWriter,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    member = await organizations.add_member(
        session,
        org,
        member_id=body.member_id,
        member_type=body.member_type,
        scopes=body.scopes,
        group_ids=body.groups,
        user_title=body.user_title,
        metadata=body.metadata,
    )
    return single(MemberOut.of(member), member.row.etag, status=201)


@router.patch(
    "/{org_id}/members/{member_id}",
    response_model=Envelope[MemberOut],
    responses=ERRORS,
    summary="Update Organization Member",
)
async def update_member(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    member_id: MemberId,
    body: MemberUpdate,
    _: MemberWriter,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    changes = body.model_dump(exclude_unset=True)
    member = await organizations.update_member(session, org_id, member_id, changes, if_match)
    return single(MemberOut.of(member), member.row.etag)


@router.delete(
    "/{org_id}/members/{member_id}", status_code=204, responses=ERRORS, summary="Remove Organization Member"
)
async def remove_member(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    member_id: MemberId,
    _: MemberWriter,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    await organizations.remove_member(session, org_id, member_id, if_match)
    return no_content()


# --- groups ----------------------------------------------------------------------------------------


@router.get(
    "/{org_id}/groups", response_model=Page[GroupOut], responses=ERRORS, summary="List Organization Groups"
)
async def list_groups(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: GroupReader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    found = await keyset(session, organizations.groups_statement(org_id), Group.id, paging)
    return page([GroupOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post(
    "/{org_id}/groups",
    status_code=201,
    response_model=Envelope[GroupOut],
    responses=ERRORS,
    summary="Create Organization Group",
)
async def create_group(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: GroupCreate,
    _: GroupWriter,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    group = await organizations.create_group(session, org, body.model_dump(exclude_unset=True))
    return single(GroupOut.of(group), group.etag, status=201)


@router.get(
    "/{org_id}/groups/{group_id}",
    response_model=Envelope[GroupOut],
    responses=ERRORS,
    summary="Get Organization Group",
)
async def get_group(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    group_id: GroupId,
    _: GroupReader,
    session: Session,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    group = await organizations.get_group(session, org_id, group_id)
    return single(GroupOut.of(group), group.etag)


@router.patch(
    "/{org_id}/groups/{group_id}",
    response_model=Envelope[GroupOut],
    responses=ERRORS,
    summary="Update Organization Group",
)
async def update_group(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    group_id: GroupId,
    body: GroupUpdate,
    _: GroupWriter,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    changes = body.model_dump(exclude_unset=True)
    group = await organizations.update_group(session, org_id, group_id, changes, if_match)
    return single(GroupOut.of(group), group.etag)


@router.delete(
    "/{org_id}/groups/{group_id}", status_code=204, responses=ERRORS, summary="Delete Organization Group"
)
async def delete_group(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    group_id: GroupId,
    _: GroupWriter,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    await organizations.delete_group(session, org_id, group_id, if_match)
    return no_content()
