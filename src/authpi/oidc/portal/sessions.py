"""The sessions section: ``POST /{issuer_id}/account/sessions/revoke`` ends one of the user's
sign-ins (another browser, or this one: that signs this browser out)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.routes import Routes
from authpi.services import account
from authpi.services.errors import NotFound

router = Routes()


@router.post("/{issuer_id}/account/sessions/revoke")
async def revoke_session(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True)
        if isinstance(portal, Response):
            return portal
        try:
            await account.revoke_sign_in(session, portal.issuer, portal.user, portal.form.get("session", ""))
        except NotFound:
            await session.rollback()
            return await overview.page(
                request, portal, status=404, error=_l("That sign-in has already ended.")
            )
        await session.commit()
        return portal.done("session", "sessions")
