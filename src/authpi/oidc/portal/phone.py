"""The phone section: ``POST /{issuer_id}/account/phone`` asks to change the phone number (a
sensitive change) and texts a code to the new one; ``POST /{issuer_id}/account/phone/confirm``
takes the code. The number changes, verified, only once the code comes back; a number another
account signs in with gets no SMS and the same page."""

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
from authpi.services import email_verification, one_time_codes, users
from authpi.services.errors import InvalidInput
from authpi.storage.tables.users import User

router = Routes()
WRONG_CODE = _l("That code is not right. Enter the code from the text message.")
SPENT_CODE = _l("This code has expired or was tried too often. Ask for a new one.")


def code_page(
    request: Request, portal: Portal, number: str, *, error: Text | None = None, status: int = 200
) -> Response:
    return portal.render(
        request, "account/phone.html", status, action=portal.url("/phone/confirm"), number=number, error=error
    )


async def _taken(portal: Portal, key: str) -> bool:
    found = await portal.session.scalar(
        select(User.id).where(
            User.issuer_id == portal.issuer.id, User.username_key == key, User.id != portal.user.id
        )
    )
    return found is not None


@router.post("/{issuer_id}/account/phone")
async def change_phone(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
        if isinstance(portal, Response):
            return portal
        try:
            number = users.normalize_username("phone", portal.form.get("phone", "")[:32])
        except InvalidInput:
            error = _l("Enter the number in international format, such as +14155550123.")
            return await overview.page(request, portal, status=400, error=error)
        if number.value == email_verification.phone_of(portal.user):
            return await overview.page(request, portal, status=400, error=_l("That is already your number."))
        limited = await send_limited(request, portal.rt, portal.issuer, number.key, "sms")
        if limited is not None:
            return limited
        if not await _taken(portal, number.key):
            await email_verification.send_phone_code(
                session,
                portal.rt.secretbox,
                portal.issuer,
                number=number.value,
                user_id=portal.user.id,
                locale=locale_for(request, portal.issuer),  # the portal page's language
            )
        await session.commit()
        return code_page(request, portal, number.value)


@router.post("/{issuer_id}/account/phone/confirm")
async def confirm_phone(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=True)
        if isinstance(portal, Response):
            return portal
        number = portal.form.get("phone", "")[:32]
        row = await one_time_codes.latest(
            session,
            issuer_id=portal.issuer.id,
            purpose=email_verification.CHANGE_PHONE,
            user_id=portal.user.id,
        )
        if row is None or row.consumed_at is not None:
            return code_page(request, portal, number, error=WRONG_CODE, status=400)
        check = await one_time_codes.check_code(
            session, portal.rt.secretbox, code_id=row.id, code=portal.form.get("code", ""), commit=False
        )
        if not check.success or check.row is None:
            await session.commit()
            text = WRONG_CODE if check.error == "wrong" else SPENT_CODE
            return code_page(request, portal, number, error=text, status=400)
        changed = await email_verification.apply_phone_change(
            session, portal.issuer, portal.user.id, str(check.row.data["phone_number"])
        )
        if changed is None:
            await session.rollback()
            return await overview.page(request, portal, status=409, error=_l("This number cannot be used."))
        await session.commit()
        return portal.done("phone", "phone")
