"""A TOTP code as the second factor: ``POST /{issuer_id}/mfa/totp``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.services import verifiers

router = Routes()
AMR = ("otp",)
WRONG_CODE = _l("That code is not right. Enter the current code from your authenticator app.")


def action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/mfa/totp"


def code_page(request: Request, flow: Flow, *, error: Text | None = None, status: int = 200) -> Response:
    return flow.render(
        request, "totp/code.html", status, action=action(flow), others_url=flow.others_url, error=error
    )


@router.post("/{issuer_id}/mfa/totp")
async def verify_code(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        owed = await flow.second_factor(request, verifiers.TOTP)
        if isinstance(owed, Response):
            return owed
        user, method = owed
        code = flow.form.get("code", "")
        check = await verifiers.check_totp(session, flow.rt.secretbox, flow.issuer, user, code)
        if not check.success:
            await session.commit()  # the failure's event (the attempt is already counted)
            text = flows.locked_text(check.locked_for_ms) if check.error == verifiers.LOCKED else WRONG_CODE
            flow.others_url = flow.page_url("mfa") + "&choose=1"
            return code_page(request, flow, error=text, status=400)
        return await flow.passed(request, user, flows.factor(method.method, method.id, AMR))
