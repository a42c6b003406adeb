"""SSO domains of an organization (core-api §B.2 rows 98-100) and the SSO connection's client
secret (row 101). The connection's settings are the organization's ``sso`` block (org PATCH)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, single
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.routes.organizations import OrgId, load_org
from authpi.http.schemas.common import ERRORS, StrictInput
from authpi.services import organizations, sso_connections, sso_domains
from authpi.services.principal import Principal

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/organizations/{org_id}/sso", tags=["organizations"]
)
Domain = Annotated[str, Path(max_length=253, description="The domain, e.g. acme.com")]
Writer = Annotated[Principal, Depends(require("issuers.organizations.sso:write"))]


class DomainIn(StrictInput):
    domain: str = Field(min_length=1, max_length=253)


class DomainOut(BaseModel):
    domain: str
    txt_record_name: str
    txt_record_value: str
    verified: bool
    verified_at: int | None


class RotatedSecretOut(BaseModel):
    secret: str = Field(description="The new client secret, shown once: register it at the provider")


class VerifiedOut(BaseModel):
    verified: bool
    error: str | None = None


@router.post("/domains", response_model=Envelope[DomainOut], responses=ERRORS, summary="Add SSO Domain")
async def add_domain(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    body: DomainIn,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    org = await load_org(session, account_id, issuer_id, org_id)
    row = await sso_domains.add(session, org, body.domain)
    return single(DomainOut(**sso_domains.describe(row)), None)


@router.post(
    "/domains/{domain}/verify",
    response_model=Envelope[VerifiedOut],
    responses=ERRORS,
    summary="Verify SSO Domain",
)
async def verify_domain(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    domain: Domain,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    row = await sso_domains.get(session, org_id, domain)
    lookup = sso_domains.resolver(runtime(request).settings.dns_nameservers)
    # Read-only so far: the lookup (up to a few seconds) holds no write lock.
    values, error = await sso_domains.published_values(lookup, sso_domains.record_name(row.domain))
    if row.txt_record_value not in values:
        found = error or f"{sso_domains.record_name(row.domain)} does not hold the expected TXT value"
        return single(VerifiedOut(verified=False, error=found), None)
    await sso_domains.mark_verified(session, row)
    return single(VerifiedOut(verified=True), None)


@router.delete(
    "/domains/{domain}",
    response_model=Envelope[dict[str, Any]],
    responses=ERRORS,
    summary="Remove SSO Domain",
)
async def remove_domain(
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    domain: Domain,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    removed = await sso_domains.remove(session, org_id, domain)
    return single({"domain": removed, "removed": True}, None)


@router.post(
    "/rotate-secret",
    response_model=Envelope[RotatedSecretOut],
    responses=ERRORS,
    summary="Rotate SSO Client Secret",
)
async def rotate_secret(
    request: Request,
    account_id: AccountId,
    issuer_id: IssuerId,
    org_id: OrgId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await load_org(session, account_id, issuer_id, org_id)
    org = await organizations.get(session, issuer_id, org_id, for_update=True)
    secret = await sso_connections.rotate_secret(session, runtime(request).secretbox, org, if_match)
    return single(RotatedSecretOut(secret=secret), org.etag)
