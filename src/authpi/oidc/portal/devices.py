"""The trusted devices section: ``POST /{issuer_id}/account/devices/revoke`` stops trusting one
device (``device``) or all of them (``device=all``); their next sign-in asks the second factor."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.routes import Routes
from authpi.services import trusted_devices
from authpi.services.errors import ServiceError

router = Routes()


@router.post("/{issuer_id}/account/devices/revoke")
async def revoke_device(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        device = portal.form.get("device", "")[:64]
        if device == "all":
            reason = trusted_devices.REVOKED_BY_USER
            await trusted_devices.revoke_all(
                session, portal.user.id, reason=reason, account_id=portal.issuer.account_id
            )
            await session.commit()
            return portal.done("devices", "devices")
        try:
            await trusted_devices.revoke(
                session, portal.issuer, portal.user.id, device, None, reason=trusted_devices.REVOKED_BY_USER
            )
        except ServiceError:
            await session.rollback()
            return await overview.page(
                request, portal, status=404, error=_l("That device is no longer trusted.")
            )
        await session.commit()
        return portal.done("device", "devices")
