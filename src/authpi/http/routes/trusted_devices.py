"""A user's trusted devices: ``…/users/{user_id}/trusted-devices`` (§B.2 rows 105-108).

Devices are trusted by the user's own browser after a second factor on the hosted pages. ``create``
pre-registers one for a fingerprint the caller supplies (the SHA-256 of the device cookie a
browser will present); delete and ``revoke-all`` end the trust at once. ``revoke-all`` takes an
If-Match against the user's ETag: "revoke every device of the user as I last saw them".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from fastapi.responses import JSONResponse, Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, single
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.trusted_devices import (
    RevokedAllOut,
    TrustedDeviceCreate,
    TrustedDeviceCreated,
    TrustedDeviceOut,
    device_out,
)
from authpi.services import issuers, trusted_devices, users
from authpi.services.errors import check_etag
from authpi.services.principal import Principal
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/users/{user_id}/trusted-devices",
    tags=["trusted devices"],
)
UserId = Annotated[str, Path(max_length=64, description="The user ID")]
DeviceId = Annotated[str, Path(max_length=64, description="The trusted device ID")]
Reader = Annotated[Principal, Depends(require("issuers.users.trusted_devices:read"))]
Writer = Annotated[Principal, Depends(require("issuers.users.trusted_devices:write"))]


async def _owner(
    session: Session, account_id: str, issuer_id: str, user_id: str, *, for_update: bool = False
) -> tuple[Issuer, User]:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    return issuer, await users.get_user(session, issuer_id, user_id, for_update=for_update)


@router.get("", response_model=Page[TrustedDeviceOut], responses=ERRORS, summary="List Trusted Devices")
async def list_devices(
    account_id: AccountId, issuer_id: IssuerId, user_id: UserId, _: Reader, session: Session
) -> Response:
    user = (await _owner(session, account_id, issuer_id, user_id))[1]
    rows = await trusted_devices.list_for_user(session, user.id)
    # Not paginated (at most MAX_PER_USER): the SDK's list_all() never forwards a cursor.
    items = [device_out(row).model_dump(mode="json") for row in rows]
    return JSONResponse({"data": items, "has_more": False, "next_cursor": None})


@router.post(
    "",
    status_code=201,
    response_model=Envelope[TrustedDeviceCreated],
    responses=ERRORS,
    summary="Trust a Device",
)
async def create_device(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    body: TrustedDeviceCreate,
    _: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    row = await trusted_devices.register(
        session,
        issuer,
        user.id,
        digest=body.fingerprint,
        name=body.name,
        user_agent=body.user_agent,
        ttl_seconds=body.ttl_seconds,
    )
    out = TrustedDeviceCreated(device_id=row.id, expires_at=row.expires_at)
    return single(out, trusted_devices.etag(row), status=201)


@router.post(
    "/revoke-all",
    response_model=Envelope[RevokedAllOut],
    responses=ERRORS,
    summary="Revoke All Trusted Devices",
)
async def revoke_all(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The user row is locked: a sign-in trusting a new device waits (it locks the user too).
    issuer, user = await _owner(session, account_id, issuer_id, user_id, for_update=True)
    check_etag("User", if_match, user.etag)
    count = await trusted_devices.revoke_all(
        session, user.id, reason=trusted_devices.REVOKED_BY_ADMIN, account_id=issuer.account_id
    )
    return single(RevokedAllOut(revoked_count=count), None)


@router.delete("/{device_id}", status_code=204, responses=ERRORS, summary="Revoke Trusted Device")
async def delete_device(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    device_id: DeviceId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    await trusted_devices.revoke(session, issuer, user.id, device_id, if_match)
    return no_content()
