"""The ``email_link`` method: a single-use sign-in link mailed to the account's address."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.email_link import login
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User


class EmailLink(Strategy):
    method = "email_link"
    steps = frozenset({Step.FIRST_FACTOR})
    amr = login.AMR
    router: ClassVar[Routes] = login.router
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
            label = _l("Email me a sign-in link")
            return Offer(label, login.start_action(flow), method.id, featured=method.featured)
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        return await login.send_link(request, flow, method, identifier or "")


EMAIL_LINK = EmailLink()
