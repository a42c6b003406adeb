"""The ``sms_otp`` method: a 6-digit code texted to the account's phone number, as a first factor."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.otp import CodeMethod
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

CODES = CodeMethod("sms_otp", "sms", "/login/sms-code", ("sms",), "sms_otp/code.html")


class SmsOtp(Strategy):
    method = "sms_otp"
    steps = frozenset({Step.FIRST_FACTOR, Step.REGISTRATION})
    amr = CODES.amr
    router: ClassVar[Routes] = CODES.routes()
    templates = Path(__file__).parent / "templates"

    async def offer(
        self,
        step: Step,
        flow: Flow,
        method: AuthMethod,
        *,
        identifier: str | None = None,
        user: User | None = None,
    ) -> Offer | None:
        # Offered for every identifier, account or not: the offer must not reveal which exist.
        if step is Step.FIRST_FACTOR and identifier is not None:
            return Offer(_l("Text me a code"), CODES.start_action(flow), method.id, featured=method.featured)
        if step is Step.REGISTRATION:
            return CODES.signup_offer(flow, method, _l("Create an account with a text message code"))
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        return await CODES.start(request, flow, method, identifier or "")


SMS_OTP = SmsOtp()
