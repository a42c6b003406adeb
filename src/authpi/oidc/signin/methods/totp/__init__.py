"""The ``totp`` method: an authenticator app's code as a second factor, and setting one up at
sign-in when a second factor is needed and the user has none."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.totp import enrollment, login
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.services import verifiers
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User


class Totp(Strategy):
    method = "totp"
    steps = frozenset({Step.SECOND_FACTOR, Step.ENROLLMENT})
    amr = login.AMR
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
        if user is None:
            return None
        if step is Step.SECOND_FACTOR and await self.enrolled(flow, method, user):
            return Offer(_l("Use your authenticator app"), login.action(flow), method.id, featured=True)
        if step is Step.ENROLLMENT:
            return Offer(_l("Set up an authenticator app"), enrollment.action(flow), method.id, featured=True)
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        user = await flow.pending_user()
        if user is None:
            return flow.expired(request)
        if await self.enrolled(flow, method, user):
            return login.code_page(request, flow)
        return await enrollment.enrollment_page(request, flow, user)

    async def enrolled(self, flow: Flow, method: AuthMethod, user: User) -> bool:
        return bool(await verifiers.active_of_type(flow.session, user.id, verifiers.TOTP))


TOTP = Totp()
Totp.router.routes.extend(login.router.routes + enrollment.router.routes)
