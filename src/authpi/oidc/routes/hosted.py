"""The hosted pages (decision 21): login, password, signup, consent and account selection."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.observability import metrics
from authpi.oidc import authorization, login
from authpi.oidc.authorization import AuthorizeParams
from authpi.oidc.browser import SESSION_COOKIE, Csrf
from authpi.oidc.context import issuer_url, load_client, load_issuer, parse_form, runtime
from authpi.oidc.pages import EXPIRED, message, page_url, proceed, rate_limited, redirect, render
from authpi.oidc.routes import Routes
from authpi.oidc.routes.authorize import current_sign_in
from authpi.runtime import Runtime
from authpi.services import sessions as session_service
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

router = Routes()
SIGN_IN_UNAVAILABLE = "Sign-in unavailable"


@dataclass
class Flow:
    """One step of a pending authorization request, as the hosted pages see it."""

    rt: Runtime
    session: AsyncSession
    issuer: Issuer
    client: Client
    params: AuthorizeParams
    request_id: str
    csrf: Csrf
    form: dict[str, str]


async def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_form(await request.body(), 32 * 1024).items()}


async def _flow(request: Request, session: AsyncSession, issuer_id: str, *, post: bool) -> Flow | Response:
    rt = runtime(request)
    issuer = await load_issuer(session, issuer_id)
    form = await _form(request) if post else {}
    csrf = Csrf(rt, request)
    if post and not csrf.valid(form.get("csrf")):
        return message(
            request, rt, issuer, "Please try again", "Your session form expired. Go back and retry.", 403
        )
    request_id = form.get("request") if post else request.query_params.get("request")
    params = await authorization.recall(session, issuer, request_id)
    client = await load_client(session, issuer.id, params.client_id) if params else None
    if params is None or client is None or request_id is None:
        return message(request, rt, issuer, "Sign-in expired", EXPIRED)
    return Flow(rt, session, issuer, client, params, request_id, csrf, form)


async def _rate_limited(request: Request, flow: Flow) -> Response | None:
    text = "Too many sign-in attempts. Wait and retry."
    return await rate_limited(request, flow.rt, flow.issuer, "login", text)


async def _account_rate_limited(request: Request, flow: Flow, identifier: str) -> Response | None:
    """Password attempts per account, from every address together, so many addresses cannot hammer
    one account (the per-IP limit covers one address trying many accounts)."""
    account = login.account_key(flow.issuer, identifier)
    text = "Too many sign-in attempts for this account. Wait and retry."
    return await rate_limited(request, flow.rt, flow.issuer, "login_account", text, account)


def _login_closed(request: Request, flow: Flow) -> Response | None:
    """The refusal page while ``settings.portals.login`` is switched off."""
    if portal_enabled(flow.issuer.settings, "login"):
        return None
    return message(
        request,
        flow.rt,
        flow.issuer,
        SIGN_IN_UNAVAILABLE,
        "Signing in is switched off for this application. Try again later.",
        403,
    )


async def _signup_url(flow: Flow) -> str | None:
    """The sign-up page, when sign-up is open: its portal and the login portal it leads to are on,
    the password method accepts sign-ups, and the access mode lets anyone ask."""
    settings = flow.issuer.settings
    if not (portal_enabled(settings, "signup") and portal_enabled(settings, "login")):
        return None
    method = await login.password_method(flow.session, flow.issuer.id)
    if method is None or not method.enabled_signup or settings["access"]["mode"] not in ("open", "approval"):
        return None
    return page_url(flow.issuer, "signup", flow.request_id)


def _login_page(
    request: Request,
    flow: Flow,
    username: str = "",
    error: str | None = None,
    status: int = 200,
    signup_url: str | None = None,
) -> Response:
    return render(
        request,
        flow.rt,
        flow.issuer,
        flow.csrf,
        "login.html",
        status,
        client_name=flow.client.name,
        action=f"/{flow.issuer.id}/login",
        request_id=flow.request_id,
        username=username,
        error=error,
        signup_url=signup_url,
    )


@router.get("/{issuer_id}/login")
async def login_page(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=False)
        if isinstance(flow, Response):
            return flow
        closed = _login_closed(request, flow)
        if closed is not None:
            return closed
        hint = request.query_params.get("login_hint", "")[:320]
        return _login_page(request, flow, hint, signup_url=await _signup_url(flow))


@router.post("/{issuer_id}/login")
async def login_identifier(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        closed = _login_closed(request, flow)
        if closed is not None:
            return closed
        username = flow.form.get("username", "").strip()[:320]
        if not username:
            return _login_page(request, flow, error="Enter your email or username.", status=400)
        method = await login.password_method(session, flow.issuer.id)
        if method is None or not method.enabled_login:
            return message(
                request, flow.rt, flow.issuer, SIGN_IN_UNAVAILABLE, "No sign-in method is enabled."
            )
        # Identifier first, then the password, whether or not the account exists.
        return _password_page(request, flow, username)


@router.post("/{issuer_id}/login/password")
async def login_password(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        refused = _login_closed(request, flow) or await _rate_limited(request, flow)
        if refused is not None:
            return refused
        method = await login.password_method(session, flow.issuer.id)
        if method is None or not method.enabled_login:
            return message(
                request, flow.rt, flow.issuer, SIGN_IN_UNAVAILABLE, "No sign-in method is enabled."
            )
        username = flow.form.get("username", "")[:320]
        limited = await _account_rate_limited(request, flow, username)
        if limited is not None:
            return limited
        outcome = await login.verify(session, flow.issuer, username, flow.form.get("password", "")[:1024])
        metrics.count_login(outcome.result, locked_now=outcome.locked_now)
        if outcome.user is None:
            # 400, not 401: a 401 must carry a WWW-Authenticate challenge, and a form has none.
            return _password_page(request, flow, username, status=400, error=outcome.error)
        return await _signed_in(request, flow, outcome.user.id, "password")


def _password_page(
    request: Request,
    flow: Flow,
    username: str,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    return render(
        request,
        flow.rt,
        flow.issuer,
        flow.csrf,
        "password.html",
        status,
        action=f"/{flow.issuer.id}/login/password",
        restart_url=page_url(flow.issuer, "login", flow.request_id),
        request_id=flow.request_id,
        username=username,
        error=error,
        notice=notice,
    )


async def _signed_in(request: Request, flow: Flow, user_id: str, method: str) -> Response:
    device = {
        "user_agent": request.headers.get("user-agent", "")[:500],
        "ip": request.client.host if request.client else None,
    }
    # Signing in again in this browser supersedes its previous sign-in, whoever it was.
    op, cookie = await session_service.create_op_session(
        flow.session,
        flow.issuer,
        user_id,
        method=method,
        device=device,
        replaces=request.cookies.get(SESSION_COOKIE),
    )
    user = await flow.session.get(User, user_id)
    assert user is not None
    return await proceed(
        request,
        flow.rt,
        flow.session,
        flow.issuer,
        flow.client,
        flow.params,
        flow.request_id,
        op,
        user,
        new_cookie=cookie,
    )


def _signup_page(
    request: Request, flow: Flow, policy: dict[str, int], error: str | None = None, status: int = 200
) -> Response:
    return render(
        request,
        flow.rt,
        flow.issuer,
        flow.csrf,
        "signup.html",
        status,
        action=f"/{flow.issuer.id}/signup",
        login_url=page_url(flow.issuer, "login", flow.request_id),
        request_id=flow.request_id,
        email=flow.form.get("email", "")[:320],
        name=flow.form.get("name", "")[:200],
        min_length=policy["min_length"],
        max_length=policy["max_length"],
        error=error,
    )


@router.get("/{issuer_id}/signup")
@router.post("/{issuer_id}/signup")
async def signup(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        if await _signup_url(flow) is None:
            return message(
                request,
                flow.rt,
                flow.issuer,
                "Sign-up closed",
                "This application does not accept sign-ups.",
                403,
            )
        method = await login.password_method(session, flow.issuer.id)
        assert method is not None
        policy = login.password_policy(method)
        if not post:
            return _signup_page(request, flow, policy)
        limited = await _rate_limited(request, flow)
        if limited is not None:
            return limited
        email = flow.form.get("email", "").strip()[:320]
        problem = await login.signup(
            session,
            flow.issuer,
            email,
            flow.form.get("name", ""),
            flow.form.get("password", "")[:1024],
            method,
        )
        if problem is not None:
            return _signup_page(request, flow, policy, problem, 400)
        # One answer whether the account was just created or the address was already taken
        # (see login.signup): never sign the visitor in from here, let the password step decide.
        if flow.issuer.settings["access"]["mode"] == "approval":
            return message(
                request,
                flow.rt,
                flow.issuer,
                "Thanks for signing up",
                "Your request has been received. You can sign in once it has been approved.",
                200,
            )
        return _password_page(
            request, flow, email, notice="Thanks for signing up. Enter your password again to sign in."
        )


@router.get("/{issuer_id}/consent")
@router.post("/{issuer_id}/consent")
async def consent(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        signed_in = await current_sign_in(request, session, flow.issuer)
        if signed_in is None:
            return redirect(page_url(flow.issuer, "login", flow.request_id))
        op, user = signed_in
        if not post:
            return render(
                request,
                flow.rt,
                flow.issuer,
                flow.csrf,
                "consent.html",
                action=f"/{flow.issuer.id}/consent",
                request_id=flow.request_id,
                client_name=flow.client.name,
                username=user.username,
                scopes=flow.params.scope,
            )
        if flow.form.get("decision") != "allow":
            await authorization.forget(session, flow.request_id)
            await session.commit()
            iss = issuer_url(flow.rt, flow.issuer.id)
            return redirect(
                authorization.error_redirect(
                    flow.params.redirect_uri,
                    flow.params.state,
                    "access_denied",
                    "The user denied access",
                    iss,
                )
            )
        await authorization.record_consent(session, flow.issuer, user.id, flow.client.id, flow.params.scope)
        flow.params.prompt = [p for p in flow.params.prompt if p != "consent"]
        return await proceed(
            request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, op, user
        )


@router.get("/{issuer_id}/select-account")
@router.post("/{issuer_id}/select-account")
async def select_account(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await _flow(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        signed_in = await current_sign_in(request, session, flow.issuer)
        if signed_in is None or (post and flow.form.get("choice") == "other"):
            return redirect(page_url(flow.issuer, "login", flow.request_id))
        op, user = signed_in
        if not post:
            return render(
                request,
                flow.rt,
                flow.issuer,
                flow.csrf,
                "select_account.html",
                action=f"/{flow.issuer.id}/select-account",
                request_id=flow.request_id,
                username=user.username,
            )
        return await proceed(
            request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, op, user
        )
