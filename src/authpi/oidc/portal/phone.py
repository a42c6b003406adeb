"""The phone section of the portal: a new number is texted a code and replaces the old one,
verified, once the code comes back (the flow itself is ``address_change``)."""

from __future__ import annotations

from starlette.requests import Request

from authpi.i18n import _l
from authpi.oidc.pages import locale_for
from authpi.oidc.portal import address_change
from authpi.oidc.portal.access import Portal
from authpi.services import email_verification, users
from authpi.services.users import Username
from authpi.storage.tables.users import User


def _parse(raw: str) -> Username:
    return users.normalize_username("phone", raw)


async def _send(request: Request, portal: Portal, number: Username) -> None:
    await email_verification.send_phone_code(
        portal.session,
        portal.rt.secretbox,
        portal.issuer,
        number=number.value,
        user_id=portal.user.id,
        locale=locale_for(request, portal.issuer),  # the portal page's language
    )


def _always(_: User) -> bool:
    return True  # a number another account signs in with is never texted


PHONE = address_change.AddressChannel(
    name="phone",
    max_length=32,
    template="account/phone.html",
    template_field="number",
    purpose=email_verification.CHANGE_PHONE,
    data_field="phone_number",
    send_channel="sms",
    texts=address_change.Texts(
        invalid=_l("Enter the number in international format, such as +14155550123."),
        unchanged=_l("That is already your number."),
        unusable=_l("This number cannot be used."),
        wrong_code=_l("That code is not right. Enter the code from the text message."),
    ),
    parse=_parse,
    current=email_verification.phone_of,
    refuses_taken=_always,
    send=_send,
    apply=email_verification.apply_phone_change,
)
router = address_change.routes(PHONE)
