"""A user's verifiers: ``…/users/{user_id}/verifiers`` (§B.2 rows 109-116).

``create`` starts a TOTP enrollment (the secret and ``otpauth://`` URI are returned this once) and
``complete-enrollment`` confirms it with a first code. Backup codes come with the user's first
second factor and are replaced with ``regenerate``; passkeys are registered by the user's browser
on the hosted pages. Every type is listed, read and deleted here, never with a secret.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, no_content, single
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.verifiers import (
    PASSWORD_ID,
    CodesOut,
    CompletedOut,
    CompleteEnrollmentIn,
    EnrollmentOut,
    VerifiedOut,
    VerifierCreate,
    VerifierOut,
    VerifierUpdate,
    VerifyIn,
    password_out,
    verifier_out,
)
from authpi.services import issuers, users, verifiers
from authpi.services.errors import NotFound, ServiceError
from authpi.services.principal import Principal
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

router = unit_of_work.router(
    prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/users/{user_id}/verifiers", tags=["verifiers"]
)
UserId = Annotated[str, Path(max_length=64, description="The user ID")]
VerifierId = Annotated[str, Path(max_length=64, description="The verifier ID")]
Reader = Annotated[Principal, Depends(require("issuers.users.verifiers:read"))]
Writer = Annotated[Principal, Depends(require("issuers.users.verifiers:write"))]

# What ``create`` answers for the types it does not create, and why.
NOT_CREATED_HERE = {
    verifiers.BACKUP_CODES: "Backup codes come with the user's first second factor (complete-enrollment); "
    "replace them with POST …/verifiers/{verifier_id}/regenerate",
    verifiers.PASSKEY: "Passkeys are registered by the user's own browser (WebAuthn) on the hosted "
    "sign-in pages, not through the Core API",
    "password": "Set or change the password with PATCH …/users/{user_id} (password)",
}
PASSWORD_READ_ONLY = "The password entry is read-only: change the password with PATCH …/users/{user_id}"


async def _owner(session: Session, account_id: str, issuer_id: str, user_id: str) -> tuple[Issuer, User]:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    return issuer, await users.get_user(session, issuer_id, user_id)


def _no_password(verifier_id: str) -> None:
    if verifier_id == PASSWORD_ID:
        raise ServiceError(PASSWORD_READ_ONLY)


def _json(body: dict[str, object], etag: str | None = None, status: int = 200) -> Response:
    return JSONResponse({"data": body}, status_code=status, headers={"ETag": etag} if etag else None)


@router.get("", response_model=Page[VerifierOut], responses=ERRORS, summary="List User Verifiers")
async def list_verifiers(
    account_id: AccountId, issuer_id: IssuerId, user_id: UserId, _: Reader, session: Session
) -> Response:
    user = (await _owner(session, account_id, issuer_id, user_id))[1]
    rows = await verifiers.list_for_user(session, user.id)
    codes = [row.id for row in rows if row.type == verifiers.BACKUP_CODES]
    remaining = await verifiers.remaining_codes(session, codes)
    items = [verifier_out(row, remaining.get(row.id)) for row in rows]
    password = password_out(user)
    # Not paginated (at most a few dozen per user): the SDK's list_all() never forwards a cursor.
    return JSONResponse(
        {"data": ([password] if password else []) + items, "has_more": False, "next_cursor": None}
    )


@router.post(
    "",
    status_code=201,
    response_model=Envelope[EnrollmentOut],
    responses=ERRORS,
    summary="Create User Verifier",
)
async def create_verifier(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    body: VerifierCreate,
    _: Writer,
    session: Session,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    if body.type != verifiers.TOTP:
        reason = NOT_CREATED_HERE.get(body.type, "type must be totp (the only verifier created here)")
        raise ServiceError(reason)
    enrollment = await verifiers.start_totp(session, runtime(request).secretbox, issuer, user, name=body.name)
    out = EnrollmentOut(
        enrollment_id=enrollment.verifier.id,
        secret=enrollment.secret,
        provisioning_uri=enrollment.provisioning_uri,
        expires_at=enrollment.verifier.expires_at or 0,
    )
    return single(out, enrollment.verifier.etag, status=201)


@router.post(
    "/complete-enrollment",
    response_model=Envelope[CompletedOut],
    responses=ERRORS,
    summary="Complete Verifier Enrollment",
)
async def complete_enrollment(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    body: CompleteEnrollmentIn,
    _: Writer,
    session: Session,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    check = await verifiers.complete_totp(
        session,
        runtime(request).secretbox,
        issuer,
        user,
        body.enrollment_id,
        body.code,
        if_match=if_match,
        commit=False,
    )
    if not check.success or check.verifier is None:
        return single(CompletedOut(success=False, error=check.error), None)
    out = CompletedOut(success=True, verifier_id=check.verifier.id, backup_codes=check.backup_codes)
    return single(out, check.verifier.etag)


@router.get(
    "/{verifier_id}", response_model=Envelope[VerifierOut], responses=ERRORS, summary="Get User Verifier"
)
async def get_verifier(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    verifier_id: VerifierId,
    _: Reader,
    session: Session,
) -> Response:
    user = (await _owner(session, account_id, issuer_id, user_id))[1]
    if verifier_id == PASSWORD_ID:
        password = password_out(user)
        if password is None:
            raise NotFound(verifiers.WHAT)
        return _json(password)
    row = await verifiers.get(session, user.id, verifier_id)
    remaining = (await verifiers.remaining_codes(session, [row.id]))[row.id]
    return _json(verifier_out(row, remaining), row.etag)


@router.patch(
    "/{verifier_id}", response_model=Envelope[VerifierOut], responses=ERRORS, summary="Update User Verifier"
)
async def update_verifier(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    verifier_id: VerifierId,
    body: VerifierUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    _no_password(verifier_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("name", "") is None or ("primary" in changes and changes["primary"] is None):
        raise ServiceError("name and primary cannot be null")
    row = await verifiers.update_verifier(session, issuer, user, verifier_id, changes, if_match)
    remaining = (await verifiers.remaining_codes(session, [row.id]))[row.id]
    return _json(verifier_out(row, remaining), row.etag)


@router.delete("/{verifier_id}", status_code=204, responses=ERRORS, summary="Delete User Verifier")
async def delete_verifier(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    verifier_id: VerifierId,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    _no_password(verifier_id)
    await verifiers.delete_verifier(session, issuer, user, verifier_id, if_match)
    return no_content()


@router.post(
    "/{verifier_id}/regenerate",
    response_model=Envelope[CodesOut],
    responses=ERRORS,
    summary="Regenerate Backup Codes",
)
async def regenerate_codes(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    verifier_id: VerifierId,
    _: Writer,
    session: Session,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    _no_password(verifier_id)
    box = runtime(request).secretbox
    row, codes = await verifiers.regenerate(session, box, issuer, user, verifier_id, if_match)
    return single(CodesOut(codes=codes), row.etag)


@router.post(
    "/{verifier_id}/verify",
    response_model=Envelope[VerifiedOut],
    responses=ERRORS,
    summary="Verify Authentication Code",
)
async def verify_code(
    account_id: AccountId,
    issuer_id: IssuerId,
    user_id: UserId,
    verifier_id: VerifierId,
    body: VerifyIn,
    _: Writer,
    session: Session,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer, user = await _owner(session, account_id, issuer_id, user_id)
    _no_password(verifier_id)
    box = runtime(request).secretbox
    check = await verifiers.verify(session, box, issuer, user, verifier_id, body.code, if_match)
    out = VerifiedOut(success=check.success, remaining=check.remaining, error=check.error)
    return single(out, None)
