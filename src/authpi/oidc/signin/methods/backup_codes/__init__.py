"""The ``backup_codes`` method: a single-use code standing in for the user's other second factor
(a fallback: offered after it, never on its own a reason to ask for a second factor)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.backup_codes import login
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.services import verifiers
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User


class BackupCodes(Strategy):
    method = "backup_codes"
    steps = frozenset({Step.SECOND_FACTOR})
    amr = login.AMR
    fallback = True
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
        if step is Step.SECOND_FACTOR and user is not None and await self.enrolled(flow, method, user):
            return Offer(_l("Use a backup code"), login.action(flow), method.id)
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        return login.code_page(request, flow)

    async def enrolled(self, flow: Flow, method: AuthMethod, user: User) -> bool:
        """Whether the user has an unused backup code."""
        rows = await verifiers.active_of_type(flow.session, user.id, verifiers.BACKUP_CODES)
        remaining = await verifiers.remaining_codes(flow.session, [row.id for row in rows])
        return any(remaining.values())


BACKUP_CODES = BackupCodes()
BackupCodes.router.routes.extend(login.router.routes)
