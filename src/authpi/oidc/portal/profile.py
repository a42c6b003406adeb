"""The profile section: ``POST /{issuer_id}/account/profile`` sets the user's own name claims."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access, overview
from authpi.oidc.routes import Routes
from authpi.services import account
from authpi.services.errors import InvalidInput

router = Routes()


@router.post("/{issuer_id}/account/profile")
async def save_profile(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True)
        if isinstance(portal, Response):
            return portal
        values = {key: portal.form[key] for key in account.PROFILE_FIELDS if key in portal.form}
        try:
            await account.update_profile(session, portal.user, values)
        except InvalidInput as exc:
            await session.rollback()
            # The only refusal is a value over its field's length limit (account.PROFILE_FIELDS).
            field = exc.fields[0].field if exc.fields else ""
            error = _l("%(field)s: at most %(n)s characters.").format(
                field=overview.PROFILE_LABELS.get(field, field), n=account.PROFILE_FIELDS.get(field, 0)
            )
            return await overview.page(request, portal, status=400, error=error)
        await session.commit()
        return portal.done("profile", "profile")
