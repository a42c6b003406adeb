"""The email section of the portal: a new address is mailed a code and a link and replaces the old
one once proven (the flow itself is ``address_change``)."""

from __future__ import annotations

from starlette.requests import Request

from authpi.i18n import _l
from authpi.oidc.pages import locale_for
from authpi.oidc.portal import address_change
from authpi.oidc.portal.access import Portal
from authpi.services import email_verification, events
from authpi.services.users import Username
from authpi.storage.tables.users import User


async def _send(request: Request, portal: Portal, address: Username) -> None:
    await email_verification.send(
        portal.session,
        portal.rt.secretbox,
        portal.issuer,
        public_url=portal.rt.settings.public_url_base,
        purpose=email_verification.CHANGE,
        email=address.value,
        data={"email": address.value},
        user_id=portal.user.id,
        locale=locale_for(request, portal.issuer),  # the portal page's language
    )


async def _requested(portal: Portal) -> None:
    await events.emit_for(
        portal.session,
        "user.email.change-requested",
        portal.user,
        "user",
        data={"user_id": portal.user.id},
        account_id=portal.issuer.account_id,
        issuer_id=portal.issuer.id,
        user_id=portal.user.id,
    )


def _signs_in_with_email(user: User) -> bool:
    # Only an email username must stay unique; a user who signs in otherwise may share an address.
    return user.username_type == "email"


EMAIL = address_change.AddressChannel(
    name="email",
    max_length=320,
    template="account/email.html",
    template_field="email",
    purpose=email_verification.CHANGE,
    data_field="email",
    send_channel="email",
    texts=address_change.Texts(
        invalid=_l("Enter a valid email address."),
        unchanged=_l("That is already your address."),
        unusable=_l("This address cannot be used."),
        wrong_code=_l("That code is not right. Enter the code from the email."),
    ),
    parse=email_verification.normalized,
    current=email_verification.address_of,
    refuses_taken=_signs_in_with_email,
    send=_send,
    apply=email_verification.apply_change,
    requested=_requested,
)
router = address_change.routes(EMAIL)
