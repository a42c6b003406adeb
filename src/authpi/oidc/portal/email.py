"""The email section: ``POST /{issuer_id}/account/email`` asks to change the address (a sensitive
change) and mails a code and link to the new one; ``POST /{issuer_id}/account/email/confirm``
takes the code. The old address stays until the new one is proven (``services/email_verification``);
an address another account holds gets no mail and the same page."""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.pages import locale_for, send_limited
from authpi.oidc.portal import access, overview
from authpi.oidc.portal.access import Portal
from authpi.oidc.routes import Routes
from authpi.services import email_verification, events, one_time_codes
from authpi.services.errors import InvalidInput
from authpi.storage.tables.users import User

router = Routes()
WRONG_CODE = _l("That code is not right. Enter the code from the email.")
SPENT_CODE = _l("This code has expired or was tried too often. Ask for a new one.")


def code_page(
    request: Request, portal: Portal, email: str, *, error: Text | None = None, status: int = 200
) -> Response:
    return portal.render(
        request, "account/email.html", status, action=portal.url("/email/confirm"), email=email, error=error
    )


async def _taken(portal: Portal, key: str) -> bool:
    found = await portal.session.scalar(
        select(User.id).where(
            User.issuer_id == portal.issuer.id, User.username_key == key, User.id != portal.user.id
        )
    )
    return found is not None


@router.post("/{issuer_id}/account/email")
async def change_email(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        try:
            address = email_verification.normalized(portal.form.get("email", "")[:320])
        except InvalidInput:
            return await overview.page(request, portal, status=400, error=_l("Enter a valid email address."))
        if address.value == email_verification.address_of(portal.user):
            return await overview.page(request, portal, status=400, error=_l("That is already your address."))
        limited = await send_limited(request, portal.rt, portal.issuer, address.key)
        if limited is not None:
            return limited
        if not (portal.user.username_type == "email" and await _taken(portal, address.key)):
            await email_verification.send(
                session,
                portal.rt.secretbox,
                portal.issuer,
                public_url=portal.rt.settings.public_url_base,
                purpose=email_verification.CHANGE,
                email=address.value,
                data={"email": address.value},
                user_id=portal.user.id,
                locale=locale_for(request, portal.issuer),  # the portal page's language
            )
        await events.emit_for(
            session,
            "user.email.change-requested",
            portal.user,
            "user",
            data={"user_id": portal.user.id},
            account_id=portal.issuer.account_id,
            issuer_id=portal.issuer.id,
            user_id=portal.user.id,
        )
        await session.commit()
        return code_page(request, portal, address.value)


@router.post("/{issuer_id}/account/email/confirm")
async def confirm_email(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True)
        if isinstance(portal, Response):
            return portal
        email = portal.form.get("email", "")[:320]
        row = await one_time_codes.latest(
            session, issuer_id=portal.issuer.id, purpose=email_verification.CHANGE, user_id=portal.user.id
        )
        if row is None or row.consumed_at is not None:
            return code_page(request, portal, email, error=WRONG_CODE, status=400)
        check = await one_time_codes.check_code(
            session, portal.rt.secretbox, code_id=row.id, code=portal.form.get("code", ""), commit=False
        )
        if not check.success or check.row is None:
            await session.commit()
            text = WRONG_CODE if check.error == "wrong" else SPENT_CODE
            return code_page(request, portal, email, error=text, status=400)
        changed = await email_verification.apply_change(
            session, portal.issuer, portal.user.id, str(check.row.data["email"])
        )
        if changed is None:
            await session.rollback()
            return await overview.page(request, portal, status=409, error=_l("This address cannot be used."))
        await session.commit()
        return portal.done("email", "email")
