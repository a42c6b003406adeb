"""The consents section: ``POST /{issuer_id}/account/consents/revoke`` withdraws the consent the
user gave an application (which then asks again, and whose sessions for the user end)."""

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


@router.post("/{issuer_id}/account/consents/revoke")
async def revoke_consent(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True)
        if isinstance(portal, Response):
            return portal
        try:
            await account.revoke_consent(session, portal.issuer, portal.user, portal.form.get("consent", ""))
        except NotFound:
            await session.rollback()
            gone = _l("That consent is already withdrawn.")
            return await overview.page(request, portal, status=404, error=gone)
        await session.commit()
        return portal.done("consent", "consents")
