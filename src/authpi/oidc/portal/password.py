"""The password section: ``POST /{issuer_id}/account/password``. A sensitive change: a recent
sign-in and the current password; the user's other sign-ins end with the old password."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.routes import Routes
from authpi.services import account

router = Routes()


@router.post("/{issuer_id}/account/password")
async def change_password(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        form = portal.form
        outcome = await account.change_password(
            session,
            portal.issuer,
            portal.user,
            portal.op,
            current=form.get("current", "")[: account.MAX_PASSWORD],
            new=form.get("new", "")[: account.MAX_PASSWORD],
            confirm=form.get("confirm", "")[: account.MAX_PASSWORD],
        )
        await session.commit()  # a wrong current password's count stays
        if outcome.problem is not None:
            return await overview.page(request, portal, status=400, error=outcome.problem)
        return portal.done("new_password", "change-password")
