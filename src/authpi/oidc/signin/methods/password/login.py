"""Password as a first factor: ``POST /{issuer_id}/login/password``."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.observability import metrics
from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, Flow
from authpi.oidc.signin.methods.password import change, credentials

router = Routes()
AMR = ("pwd",)
MAX_PASSWORD = 1024


def action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/login/password"


def password_page(
    request: Request,
    flow: Flow,
    username: str,
    *,
    status: int = 200,
    error: Text | None = None,
    notice: Text | None = None,
) -> Response:
    return flow.render(
        request,
        "password/password.html",
        status,
        action=action(flow),
        restart_url=flow.page_url("login"),
        reset_url=f"{flow.page_url('password/reset')}&username={quote(username)}",
        username=username,
        error=error,
        notice=notice,
    )


async def _rate_limited(request: Request, flow: Flow, identifier: str) -> Response | None:
    """Per address, then per account from every address together, so many addresses cannot hammer
    one account (the per-address limit covers one address trying many accounts)."""
    text = flows.TOO_MANY_SIGN_INS
    limited = await rate_limited(request, flow.rt, flow.issuer, "login", text)
    if limited is not None:
        return limited
    account = credentials.account_key(flow.issuer, identifier)
    text = _l("Too many sign-in attempts for this account. Wait and retry.")
    return await rate_limited(request, flow.rt, flow.issuer, "login_account", text, account)


@router.post("/{issuer_id}/login/password")
async def login_password(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        username = flow.form.get("username", "")[:320]
        limited = await _rate_limited(request, flow, username)
        if limited is not None:
            return limited
        method = await credentials.password_method(session, flow.issuer.id)
        if method is None or not method.enabled_login:
            return flow.message(request, SIGN_IN_UNAVAILABLE, flows.NO_METHOD)
        password = flow.form.get("password", "")[:MAX_PASSWORD]
        outcome = await credentials.verify(session, flow.issuer, username, password)
        metrics.count_login(outcome.result, locked_now=outcome.locked_now)
        if outcome.waiting:
            # idp-api §C.5: the "pending" page; no session, no token until an admin approves.
            text = _l(
                "Your account is waiting for approval by an administrator. "
                "You will get an email once it is decided."
            )
            return flow.message(request, _l("Waiting for approval"), text, 403)
        if outcome.user is None:
            # 400, not 401: a 401 must carry a WWW-Authenticate challenge, and a form has none.
            return password_page(request, flow, username, status=400, error=outcome.error)
        if outcome.temporary:
            return await change.required(request, flow, outcome.user, method)
        return await flow.passed(request, outcome.user, flows.factor("password", method.id, AMR))
