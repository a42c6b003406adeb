"""Self-service sign-up with a password: ``GET|POST /{issuer_id}/signup``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.password import credentials
from authpi.oidc.signin.methods.password.login import MAX_PASSWORD, password_page
from authpi.oidc.signin.steps import Step
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()


def open_for(flow: Flow, method: AuthMethod) -> bool:
    """Whether sign-up is open: its portal and the login portal it leads to are on, the method
    accepts sign-ups, and the access mode lets anyone ask."""
    settings = flow.issuer.settings
    return (
        portal_enabled(settings, "signup")
        and portal_enabled(settings, "login")
        and method.enabled_signup
        and settings["access"]["mode"] in ("open", "approval")
    )


async def _signup_page(
    request: Request, flow: Flow, policy: dict[str, Any], error: str | None = None, status: int = 200
) -> Response:
    from authpi.oidc.signin.pages import offers  # the pages import the registry, which imports this

    # The other methods' sign-up buttons (another identity provider), not the links to this page.
    entries = [offer for offer in await offers(flow, Step.REGISTRATION, signup=True) if not offer.link]
    return flow.render(
        request,
        "password/signup.html",
        status,
        action=f"/{flow.issuer.id}/signup",
        login_url=flow.page_url("login"),
        email=flow.form.get("email", "")[:320],
        name=flow.form.get("name", "")[:200],
        min_length=policy["min_length"],
        max_length=policy["max_length"],
        error=error,
        entries=entries,
    )


@router.get("/{issuer_id}/signup")
@router.post("/{issuer_id}/signup")
async def signup(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        method = await credentials.password_method(session, flow.issuer.id)
        if method is None or not open_for(flow, method):
            return flow.message(request, "Sign-up closed", "This application does not accept sign-ups.", 403)
        policy = credentials.password_policy(method)
        if not post:
            return await _signup_page(request, flow, policy)
        limited = await rate_limited(
            request, flow.rt, flow.issuer, "login", "Too many sign-in attempts. Wait and retry."
        )
        if limited is not None:
            return limited
        email = flow.form.get("email", "").strip()[:320]
        problem = await credentials.signup(
            session,
            flow.issuer,
            email,
            flow.form.get("name", ""),
            flow.form.get("password", "")[:MAX_PASSWORD],
            method,
        )
        if problem is not None:
            return await _signup_page(request, flow, policy, problem, 400)
        # One answer whether the account was just created or the address was already taken
        # (see credentials.signup): never sign the visitor in from here, the password step decides.
        if flow.issuer.settings["access"]["mode"] == "approval":
            return flow.message(
                request,
                "Thanks for signing up",
                "Your request has been received. You can sign in once it has been approved.",
                200,
            )
        notice = "Thanks for signing up. Enter your password again to sign in."
        return password_page(request, flow, email, notice=notice)
