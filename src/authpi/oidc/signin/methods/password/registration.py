"""Self-service sign-up with a password: ``GET|POST /{issuer_id}/signup``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited, send_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.password import credentials
from authpi.oidc.signin.methods.password.login import MAX_PASSWORD, password_page
from authpi.oidc.signin.steps import Step
from authpi.services import email_verification, one_time_codes
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()


def open_for(flow: Flow, method: AuthMethod) -> bool:
    """Whether sign-up is open: its portal and the login portal it leads to are on, the method
    accepts sign-ups, and the access mode lets anyone ask."""
    settings = flow.issuer.settings
    # An invitation opens sign-up to its address even while the issuer is invite-only.
    invited = flow.params.invited_email is not None and settings["access"]["mode"] == "invite_only"
    return (
        portal_enabled(settings, "signup")
        and portal_enabled(settings, "login")
        and method.enabled_signup
        and (settings["access"]["mode"] in ("open", "approval") or invited)
    )


async def _signup_page(
    request: Request, flow: Flow, policy: dict[str, Any], error: Text | None = None, status: int = 200
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
            return flow.message(request, flows.SIGNUP_CLOSED, flows.NO_SIGNUPS, 403)
        policy = credentials.password_policy(method)
        if not post:
            return await _signup_page(request, flow, policy)
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", flows.TOO_MANY_SIGN_INS)
        if limited is not None:
            return limited
        email = flow.form.get("email", "").strip()[:320]
        routed = await flow.realm(request, email)  # an organization's SSO creates its domains' users
        if routed is not None:
            return routed
        invited = flow.params.invited_email
        invite_only = flow.issuer.settings["access"]["mode"] == "invite_only"
        if invited is not None and invite_only and email.lower() != invited:
            text = _l("This invitation is for %(address)s: sign up with that address.").format(
                address=invited
            )
            return await _signup_page(request, flow, policy, text, 400)
        verifying = email_verification.required_at_signup(flow.issuer)
        if verifying:
            limited = await send_limited(request, flow.rt, flow.issuer, email)
            if limited is not None:
                return limited
        problem = await credentials.signup(
            session,
            flow.issuer,
            email,
            flow.form.get("name", ""),
            flow.form.get("password", "")[:MAX_PASSWORD],
            method,
            verify=_mailer(flow, flow.locale(request)) if verifying else None,
        )
        if problem is not None:
            return await _signup_page(request, flow, policy, problem, 400)
        if verifying:
            await session.commit()
            return verify_page(request, flow, email)
        # One answer whether the account was just created or the address was already taken
        # (see credentials.signup): never sign the visitor in from here, the password step decides.
        if flow.issuer.settings["access"]["mode"] == "approval":
            return flow.message(
                request,
                flows.THANKS,
                flows.AWAITING_APPROVAL,
                200,
            )
        notice = _l("Thanks for signing up. Enter your password again to sign in.")
        return password_page(request, flow, email, notice=notice)


# --- proving the address before the account exists (services/email_verification) ---------------


def _mailer(flow: Flow, locale: str) -> credentials.Verify:
    async def mail(email: str, key: str, name: str, password_hash: str) -> None:
        data = {"email": email, "key": key, "name": name, "password_hash": password_hash}
        await email_verification.send(
            flow.session,
            flow.rt.secretbox,
            flow.issuer,
            public_url=flow.rt.settings.public_url_base,
            purpose=email_verification.SIGNUP,
            email=email,
            data=data,
            request_id=flow.request_id,
            browser=flow.browser(),
            locale=locale,
        )

    return mail


def verify_page(
    request: Request, flow: Flow, email: str, *, error: Text | None = None, status: int = 200
) -> Response:
    return flow.render(
        request,
        "verify_email.html",
        status,
        action=f"/{flow.issuer.id}/signup/verify",
        email=email,
        restart_url=flow.page_url("signup"),
        error=error,
    )


WRONG_CODE = _l("That code is not right. Enter the code from the email.")
SPENT_CODE = _l("This code has expired or was tried too often. Sign up again for a new one.")


@router.post("/{issuer_id}/signup/verify")
async def signup_verify(issuer_id: str, request: Request) -> Response:
    """The code from the email: the account is created now, its address verified."""
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        method = await credentials.password_method(session, flow.issuer.id)
        if method is None or not open_for(flow, method):
            return flow.message(
                request, _l("Sign-up closed"), _l("This application does not accept sign-ups."), 403
            )
        limited = await rate_limited(
            request, flow.rt, flow.issuer, "login", _l("Too many sign-in attempts. Wait and retry.")
        )
        if limited is not None:
            return limited
        email = flow.form.get("email", "")[:320]
        row = await email_verification.pending_signup(
            session, flow.issuer.id, flow.request_id, flow.browser()
        )
        if row is None:  # a taken address (no code was sent) answers as a wrong code
            return verify_page(request, flow, email, error=WRONG_CODE, status=400)
        check = await one_time_codes.check_code(
            session, flow.rt.secretbox, code_id=row.id, code=flow.form.get("code", ""), commit=False
        )
        if not check.success or check.row is None:
            await session.commit()
            text = WRONG_CODE if check.error == "wrong" else SPENT_CODE
            return verify_page(request, flow, email, error=text, status=400)
        user = await email_verification.create_account(session, flow.issuer, check.row.data)
        await session.commit()
        return signed_up_page(request, flow, str(check.row.data["email"]), created=user is not None)


def signed_up_page(request: Request, flow: Flow, email: str, *, created: bool) -> Response:
    """After a proven sign-up: sign in (or wait for approval)."""
    if flow.issuer.settings["access"]["mode"] == "approval":
        text = _l("Your request has been received. You can sign in once it has been approved.")
        return flow.message(request, _l("Thanks for signing up"), text, 200)
    notice = _l("Your email address is confirmed. Enter your password to sign in.")
    return password_page(request, flow, email, notice=notice)
