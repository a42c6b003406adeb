"""The second-factor section: set up an authenticator app (``POST /{issuer_id}/account/totp``, then
``/account/totp/confirm`` with its first code), new backup codes
(``/account/backup-codes/regenerate``) and removing a factor (``/account/factors/remove``). All
sensitive: a recent sign-in first. The enrollment and the checks are the sign-in pages' own
(``services/verifiers`` and the TOTP strategy's ``pending_enrollment``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.portal.access import Portal
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import locked_text
from authpi.oidc.signin.methods.totp.enrollment import EXPIRED_ENROLLMENT, pending_enrollment, qr_svg
from authpi.oidc.signin.methods.totp.login import WRONG_CODE
from authpi.services import totp, verifiers
from authpi.services.errors import ServiceError
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()
ORIGIN = "portal"  # marks enrollments started here (the sign-in pages and the Core API have theirs)
REMOVABLE = (verifiers.TOTP, verifiers.PASSKEY)
SWITCHED_OFF = _l("Authenticator apps are switched off.")
GONE = _l("That sign-in method is already removed.")


async def _totp_method(portal: Portal) -> AuthMethod | None:
    methods = await overview.methods(portal)
    return methods.get(verifiers.TOTP)


async def totp_page(
    request: Request, portal: Portal, *, error: Text | None = None, status: int = 200
) -> Response:
    try:
        row, secret, uri = await pending_enrollment(
            portal.session, portal.rt.secretbox, portal.issuer, portal.user, ORIGIN
        )
    except ServiceError as exc:  # e.g. as many verifiers as a user may have
        await portal.session.rollback()
        return await overview.page(request, portal, status=409, error=exc.description)
    return portal.render(
        request,
        "account/totp.html",
        status,
        action=portal.url("/totp/confirm"),
        qr_svg=qr_svg(uri),
        secret=totp.grouped(secret),
        enrollment_id=row.id,
        error=error,
    )


def codes_page(request: Request, portal: Portal, codes: list[str], heading: Text) -> Response:
    return portal.render(request, "account/codes.html", codes=codes, heading=heading)


@router.post("/{issuer_id}/account/totp")
async def start_totp(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        if await _totp_method(portal) is None:
            return await overview.page(
                request, portal, status=400, error=_l("Authenticator apps are switched off.")
            )
        return await totp_page(request, portal)


@router.post("/{issuer_id}/account/totp/confirm")
async def confirm_totp(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        if await _totp_method(portal) is None:
            return await overview.page(
                request, portal, status=400, error=_l("Authenticator apps are switched off.")
            )
        try:
            check = await verifiers.complete_totp(
                session,
                portal.rt.secretbox,
                portal.issuer,
                portal.user,
                portal.form.get("enrollment", "")[:64],
                portal.form.get("code", ""),
            )
        except ServiceError:
            await session.rollback()
            return await totp_page(request, portal, error=EXPIRED_ENROLLMENT, status=400)
        await session.commit()
        if not check.success:
            text = {
                verifiers.LOCKED: locked_text(check.locked_for_ms),
                verifiers.EXPIRED: EXPIRED_ENROLLMENT,
            }.get(check.error or "", WRONG_CODE)
            return await totp_page(request, portal, error=text, status=400)
        if check.backup_codes:
            return codes_page(request, portal, check.backup_codes, _l("Your authenticator app is set up"))
        return portal.done("authenticator", "factors")


@router.post("/{issuer_id}/account/backup-codes/regenerate")
async def regenerate_codes(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        try:
            _, codes = await verifiers.regenerate(
                session,
                portal.rt.secretbox,
                portal.issuer,
                portal.user,
                portal.form.get("verifier", "")[:64],
                None,
            )
        except ServiceError:
            await session.rollback()
            return await overview.page(request, portal, status=404, error=_l("You have no backup codes."))
        await session.commit()
        return codes_page(request, portal, codes, _l("Your new backup codes"))


@router.post("/{issuer_id}/account/factors/remove")
async def remove_factor(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        verifier_id = portal.form.get("verifier", "")[:64]
        try:
            row = await verifiers.get(session, portal.user.id, verifier_id)
            if row.type not in REMOVABLE:
                raise ServiceError("Not removable here")
            await verifiers.delete_verifier(session, portal.issuer, portal.user, verifier_id, None)
        except ServiceError:
            await session.rollback()
            return await overview.page(
                request, portal, status=404, error=_l("That sign-in method is already removed.")
            )
        await session.commit()
        return portal.done("factor", "factors")
