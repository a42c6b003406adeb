"""The ``password`` method: a first factor after the identifier (a temporary password then asks
for a new one first), and self-service sign-up."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.password import change, login, recovery, registration
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User


class Password(Strategy):
    method = "password"
    steps = frozenset({Step.FIRST_FACTOR, Step.REGISTRATION, Step.RECOVERY})
    amr = ("pwd",)
    router: ClassVar[Routes] = Routes()
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
        if step is Step.FIRST_FACTOR and identifier is not None:
            return Offer(_l("Password"), login.action(flow), method.id)
        if step is Step.RECOVERY and method.enabled_login:
            return Offer(_l("Forgot your password?"), recovery.reset_url(flow), method.id, link=True)
        if step is Step.REGISTRATION and registration.open_for(flow, method):
            return Offer(_l("Create an account"), flow.page_url("signup"), method.id, link=True)
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        # Identifier first, then the password, whether or not the account exists.
        return login.password_page(request, flow, identifier or "")


PASSWORD = Password()
Password.router.routes.extend(
    login.router.routes + change.router.routes + registration.router.routes + recovery.router.routes
)
