"""Changing a proven address from the portal, written once for email and phone.

``POST /{issuer_id}/account/<channel>`` asks to change it (a sensitive change) and sends a code to
the new address; ``POST /{issuer_id}/account/<channel>/confirm`` takes the code. The old address
stays until the new one is proven (``services/email_verification``). An address another account
signs in with gets no message and the same page, so signed-in users cannot probe who has an account.
Each channel (``email.py``, ``phone.py``) says only how its addresses are read, sent to and applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.pages import send_limited
from authpi.oidc.portal import access, overview
from authpi.oidc.portal.access import Portal
from authpi.oidc.routes import Routes
from authpi.services import one_time_codes
from authpi.services.errors import InvalidInput
from authpi.services.users import Username
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

SPENT_CODE = _l("This code has expired or was tried too often. Ask for a new one.")


@dataclass(frozen=True)
class Texts:
    invalid: Text  # the new address cannot be read
    unchanged: Text  # it is the current one
    unusable: Text  # it was taken while the code travelled
    wrong_code: Text


@dataclass(frozen=True)
class AddressChannel:
    """One kind of address a user proves by a code sent to it."""

    name: str  # path segment, form field and portal section: "email", "phone"
    max_length: int  # form input is cut to this before it is parsed
    template: str  # the "check your messages" page; it reads the address as ``template_field``
    template_field: str
    purpose: str  # the one-time code's purpose
    data_field: str  # where the code row keeps the new address
    send_channel: str  # the send limit's channel ("email", "sms")
    texts: Texts
    parse: Callable[[str], Username]  # raises InvalidInput
    current: Callable[[User], str | None]
    # Whether an address held by another account of the issuer is refused without a message.
    refuses_taken: Callable[[User], bool]
    send: Callable[[Request, Portal, Username], Awaitable[None]]
    apply: Callable[[AsyncSession, Issuer, str, str], Awaitable[User | None]]
    # Recorded for every request, sent or not (the audit trail sees what the user asked).
    requested: Callable[[Portal], Awaitable[None]] | None = None

    def code_page(
        self, request: Request, portal: Portal, address: str, *, error: Text | None = None, status: int = 200
    ) -> Response:
        fields = {self.template_field: address}
        action = portal.url(f"/{self.name}/confirm")
        return portal.render(request, self.template, status, action=action, error=error, **fields)


async def _taken(portal: Portal, key: str) -> bool:
    found = await portal.session.scalar(
        select(User.id).where(
            User.issuer_id == portal.issuer.id, User.username_key == key, User.id != portal.user.id
        )
    )
    return found is not None


def routes(channel: AddressChannel) -> Routes:
    router = Routes()

    async def request_change(issuer_id: str, request: Request) -> Response:
        async with runtime(request).sessions() as session:
            portal = await access.load(request, session, issuer_id, post=True, sensitive=True)
            if isinstance(portal, Response):
                return portal
            try:
                address = channel.parse(portal.form.get(channel.name, "")[: channel.max_length])
            except InvalidInput:
                return await overview.page(request, portal, status=400, error=channel.texts.invalid)
            if address.value == channel.current(portal.user):
                return await overview.page(request, portal, status=400, error=channel.texts.unchanged)
            limited = await send_limited(request, portal.rt, portal.issuer, address.key, channel.send_channel)
            if limited is not None:
                return limited
            if not (channel.refuses_taken(portal.user) and await _taken(portal, address.key)):
                await channel.send(request, portal, address)
            if channel.requested is not None:
                await channel.requested(portal)
            await session.commit()
            return channel.code_page(request, portal, address.value)

    async def confirm_change(issuer_id: str, request: Request) -> Response:
        async with runtime(request).sessions() as session:
            portal = await access.load(request, session, issuer_id, post=True)
            if isinstance(portal, Response):
                return portal
            address = portal.form.get(channel.name, "")[: channel.max_length]
            row = await one_time_codes.latest(
                session, issuer_id=portal.issuer.id, purpose=channel.purpose, user_id=portal.user.id
            )
            if row is None or row.consumed_at is not None:
                return channel.code_page(request, portal, address, error=channel.texts.wrong_code, status=400)
            check = await one_time_codes.check_code(
                session, portal.rt.secretbox, code_id=row.id, code=portal.form.get("code", ""), commit=False
            )
            if not check.success or check.row is None:
                await session.commit()
                text = channel.texts.wrong_code if check.error == "wrong" else SPENT_CODE
                return channel.code_page(request, portal, address, error=text, status=400)
            new_address = str(check.row.data[channel.data_field])
            if await channel.apply(session, portal.issuer, portal.user.id, new_address) is None:
                await session.rollback()
                return await overview.page(request, portal, status=409, error=channel.texts.unusable)
            await session.commit()
            return portal.done(channel.name, channel.name)

    router.post(f"/{{issuer_id}}/account/{channel.name}")(request_change)
    router.post(f"/{{issuer_id}}/account/{channel.name}/confirm")(confirm_change)
    return router
