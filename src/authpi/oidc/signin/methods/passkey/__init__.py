"""The ``passkey`` method (WebAuthn): a first factor (passwordless, with a discoverable credential or
the identifier field's autofill) or a second factor, as the method's ``first_factor_only`` says;
registration at sign-up and on the enrollment page.

``ceremonies`` is the WebAuthn protocol (py_webauthn), ``challenges`` keeps each ceremony's
challenge server-side, ``credentials`` the stored passkeys; ``login`` and ``registration`` are the
routes, ``static/passkey.js`` the only script of the hosted pages (served from here, no build step).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.passkey import credentials, login, registration
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

SCRIPT = Path(__file__).parent / "static" / "passkey.js"


class Passkey(Strategy):
    method = "passkey"
    steps = frozenset({Step.FIRST_FACTOR, Step.SECOND_FACTOR, Step.ENROLLMENT, Step.REGISTRATION})
    amr = ("hwk", "swk", "user")
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
        if step is Step.FIRST_FACTOR and login.serves(method, step):
            if identifier is not None:
                return Offer(_l("Passkey"), login.login_action(flow), method.id)
            # The entry on the identifier page, whose field also offers passkeys as autofill.
            return Offer(
                login.SIGN_IN_WITH_PASSKEY,
                login.login_action(flow),
                method.id,
                featured=method.featured,
                script=login.script_url(flow),
                autocomplete="webauthn",
            )
        if step is Step.SECOND_FACTOR and user is not None and await self.enrolled(flow, method, user):
            return Offer(_l("Use a passkey"), login.second_factor_action(flow), method.id)
        if step is Step.ENROLLMENT and login.serves(method, step):
            return Offer(_l("Add a passkey"), registration.enroll_action(flow), method.id)
        if step is Step.REGISTRATION and registration.signup_open(flow, method):
            return Offer(
                _l("Create an account with a passkey"), registration.signup_url(flow), method.id, link=True
            )
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        # Without an identifier the flow is on /mfa or /mfa/enroll, for the user signing in.
        user = await flow.pending_user() if identifier is None else None
        if user is not None:
            if await self.enrolled(flow, method, user):
                return await login.ceremony_page(request, flow, method, Step.SECOND_FACTOR, user=user)
            return await registration.enrollment_page(request, flow, method, user)
        return await login.ceremony_page(
            request, flow, method, Step.FIRST_FACTOR, identifier=identifier or ""
        )

    async def enrolled(self, flow: Flow, method: AuthMethod, user: User) -> bool:
        """A second factor only where the method is one (not ``first_factor_only``)."""
        if not login.serves(method, Step.SECOND_FACTOR):
            return False
        return bool(await credentials.of_user(flow.session, flow.issuer.id, user.id))


PASSKEY = Passkey()


@Passkey.router.get("/{issuer_id}/static/passkey.js")
async def script(issuer_id: str, request: Request) -> Response:
    return FileResponse(
        SCRIPT,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


Passkey.router.routes.extend(login.router.routes + registration.router.routes)
