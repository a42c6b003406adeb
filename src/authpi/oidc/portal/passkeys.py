"""The passkeys section: ``POST /{issuer_id}/account/passkeys`` starts adding a passkey (the
browser's ``navigator.credentials.create``, through the sign-in pages' ``passkey.js``) and
``POST /{issuer_id}/account/passkeys/register`` stores what the authenticator answered. The
ceremony is the passkey strategy's: its challenges (bound here to the browser and the signed-in
user instead of a sign-in request), options, verification and stored credentials."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.portal.access import Portal
from authpi.oidc.portal.factors import codes_page
from authpi.oidc.routes import Routes
from authpi.oidc.signin.methods.passkey import ceremonies, challenges, credentials
from authpi.oidc.signin.methods.passkey.ceremonies import CeremonyFailed
from authpi.oidc.signin.methods.passkey.registration import NOT_CREATED, begin_registration
from authpi.oidc.signin.steps import Step
from authpi.services import verifiers
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()
SWITCHED_OFF = _l("Passkeys are switched off.")
EXPIRED = _l("This passkey request has expired. Start again.")
TAKEN = _l("This passkey is already registered.")


async def _method(portal: Portal) -> AuthMethod | None:
    method = await credentials.passkey_method(portal.session, portal.issuer.id)
    return method if method is not None and method.enabled_login else None


async def ceremony_page(
    request: Request, portal: Portal, method: AuthMethod, *, error: Text | None = None, status: int = 200
) -> Response:
    user = portal.user
    ceremony, options = await begin_registration(
        portal.session,
        portal.rt,
        portal,
        method,
        Step.ENROLLMENT,
        handle=user.id,
        user_name=user.username,
        display_name=str(user.profile.get("name") or user.username),
        user_id=user.id,
    )
    await portal.session.commit()
    return portal.render(
        request,
        "passkey/ceremony.html",
        status,
        heading=_l("Add a passkey"),
        instructions=_l("Your device saves a passkey for %(username)s.").format(username=user.username),
        button=_l("Create a passkey"),
        mode="create",
        options=options,
        ceremony=ceremony,
        action=portal.url("/passkeys/register"),
        script_url=f"/{portal.issuer.id}/static/passkey.js",
        restart_url=portal.url(),
        username="",
        error=error,
    )


@router.post("/{issuer_id}/account/passkeys")
async def add_passkey(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        method = await _method(portal)
        if method is None:
            return await overview.page(request, portal, status=400, error=SWITCHED_OFF)
        return await ceremony_page(request, portal, method)


@router.post("/{issuer_id}/account/passkeys/register")
async def register_passkey(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        ceremony = await challenges.spend(
            session, portal, portal.form.get("ceremony", ""), challenges.REGISTER
        )
        await session.commit()  # spent, whatever follows
        method = await _method(portal)
        if method is None:
            return await overview.page(request, portal, status=400, error=SWITCHED_OFF)
        if ceremony is None or ceremony.user_id != portal.user.id:
            return await overview.page(request, portal, status=400, error=EXPIRED)
        try:
            new = ceremonies.verify_registration(
                credentials.relying_party(portal.rt, portal.issuer, method),
                portal.form.get("credential", ""),
                challenge=ceremony.challenge,
                require_user_verification=credentials.requires_user_verification(method),
            )
        except CeremonyFailed:
            return await ceremony_page(request, portal, method, error=NOT_CREATED, status=400)
        if await credentials.by_credential(session, portal.issuer.id, new.credential_id) is not None:
            return await overview.page(
                request, portal, status=409, error=_l("This passkey is already registered.")
            )
        second_factor = not method.first_factor_only
        await credentials.add(session, portal.issuer, portal.user, new, second_factor=second_factor)
        codes = None
        if second_factor:
            codes = await verifiers.first_backup_codes(
                session, portal.rt.secretbox, portal.issuer, portal.user
            )
        await session.commit()
        if codes:
            return codes_page(request, portal, codes, _l("Your passkey is added"))
        return portal.done("new_passkey", "factors")
