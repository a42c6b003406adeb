"""Rendering of the hosted pages and the step that follows a successful sign-in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from authpi import i18n
from authpi.i18n import Text, _l
from authpi.oidc import authorization
from authpi.oidc import organizations as org_rules
from authpi.oidc.authorization import AuthorizeParams
from authpi.oidc.browser import SESSION_COOKIE, Csrf, set_cookie
from authpi.oidc.context import issuer_url
from authpi.oidc.portal.client import PORTAL_CLIENT, is_portal_return
from authpi.runtime import Runtime
from authpi.services import events, send_limits
from authpi.services.errors import RateLimited
from authpi.services.issuer_settings import default_locale
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

EXPIRED = _l("This sign-in attempt has expired or is not valid. Return to the application and start again.")
SIGN_IN_EXPIRED = _l("Sign-in expired")
# The shared pages, the account portal's, then each sign-in method's own (methods/<type>/templates/<type>/…).
TEMPLATES = Jinja2Templates(
    directory=[
        Path(__file__).parent / "templates",
        Path(__file__).parent / "portal" / "templates",
        *sorted((Path(__file__).parent / "signin" / "methods").glob("*/templates")),
    ]
)
# Compiled once per worker: the templates ship with the package, so no file is checked for changes
# on every render.
TEMPLATES.env.auto_reload = False
i18n.install(TEMPLATES.env)
_COLOR = re.compile(r"^#[0-9a-fA-F]{3,8}$")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}


PLAIN_BRAND: dict[str, str | None] = {
    "name": "Sign in",
    "logo_url": None,
    "primary_color": "#3553d6",
    "background_color": "#f4f5f8",
}


def brand(issuer: Issuer) -> dict[str, str | None]:
    raw = issuer.settings.get("branding") or {}

    def color(value: Any, default: str) -> str:
        return value if isinstance(value, str) and _COLOR.match(value) else default

    logo = raw.get("logo_url")
    return {
        "name": raw.get("name") or issuer.name,
        "logo_url": logo if isinstance(logo, str) and logo.startswith("https://") else None,
        "primary_color": color(raw.get("primary_color"), str(PLAIN_BRAND["primary_color"])),
        "background_color": color(raw.get("background_color"), str(PLAIN_BRAND["background_color"])),
    }


def locale_for(request: Request, issuer: Issuer | None) -> str:
    """The language of this request's page: the flow's ``ui_locales`` (``request.state``, set when
    the flow or /authorize read them), the browser's ``Accept-Language``, the issuer's default."""
    return i18n.choose(
        getattr(request.state, "ui_locales", ()),
        request.headers.get("accept-language"),
        default_locale(issuer.settings) if issuer is not None else None,
    )


def render(
    request: Request,
    rt: Runtime,
    issuer: Issuer,
    csrf: Csrf,
    template: str,
    status: int = 200,
    **context: Any,
) -> Response:
    # Starlette renders the template here, so everything marked is translated in this language.
    with i18n.use(locale_for(request, issuer)) as locale:
        response = TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "lang": locale,
                "brand": brand(issuer),
                "static_url": f"/{issuer.id}/static/authpi.css",
                "csrf": csrf.token(),
                "error": None,
                "notice": None,
                **context,
            },
            status_code=status,
            headers={**SECURITY_HEADERS, "Content-Language": locale},
        )
    csrf.attach(response, rt, issuer.id)
    return response


def message(
    request: Request, rt: Runtime, issuer: Issuer, heading: Text, text: Text, status: int = 400
) -> Response:
    return render(
        request, rt, issuer, Csrf(rt, request), "message.html", status, heading=heading, message=text
    )


async def rate_limited(
    request: Request, rt: Runtime, issuer: Issuer, rule: str, text: Text, identity: str | None = None
) -> Response | None:
    """Count this request against ``rule`` for ``identity`` (by default the client's IP address);
    past the limit, the 429 page to answer with."""
    if identity is None:
        identity = request.client.host if request.client else "unknown"
    try:
        await rt.rate_limits.hit(rule, identity)
    except RateLimited as exc:
        if exc.first:
            await record_rate_limit(rt, issuer, rule, exc.retry_after)
        response = message(request, rt, issuer, _l("Too many attempts"), text, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return None


async def send_limited(
    request: Request, rt: Runtime, issuer: Issuer, recipient: str, channel: str = "email"
) -> Response | None:
    """Count one code sent to ``recipient`` (an email address, or a number by SMS) against the
    send limits (per recipient, per IP, per issuer); past one, the 429 page. Counted whether or not
    the recipient has an account."""
    ip = request.client.host if request.client else "unknown"
    try:
        await send_limits.check(
            rt.rate_limits, issuer_id=issuer.id, channel=channel, recipient=recipient, client_ip=ip
        )
    except RateLimited as exc:
        text = _l("Too many codes were sent. Wait and retry.")
        response = message(request, rt, issuer, _l("Too many attempts"), text, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return None


async def record_rate_limit(rt: Runtime, issuer: Issuer, rule: str, retry_after: int) -> None:
    """``auth.flow.rate-limited``, once per caller and window (a flood adds no writes)."""
    async with rt.sessions() as session:
        await events.emit(
            session,
            "auth.flow.rate-limited",
            subject={"type": "issuer", "id": issuer.id},
            data={"rule": rule, "retry_after": retry_after},
            account_id=issuer.account_id,
            issuer_id=issuer.id,
        )
        await session.commit()


def plain_message(
    issuer_id: str, heading: Text, text: Text, status: int, accept_language: str | None = None
) -> Response:
    """An error page rendered without the issuer's row (so without its branding or default
    language), for answers given before the request reaches the application, e.g. a body too large
    to read."""
    with i18n.use(i18n.choose((), accept_language)) as locale:
        page = _plain_page(issuer_id, heading, text, locale)
    headers = {**SECURITY_HEADERS, "Content-Language": locale}
    return HTMLResponse(page, status_code=status, headers=headers)


def _plain_page(issuer_id: str, heading: Text, text: Text, locale: str) -> str:
    return TEMPLATES.get_template("message.html").render(
        lang=locale,
        brand={**PLAIN_BRAND, "name": str(_l("Sign in"))},
        static_url=f"/{issuer_id}/static/authpi.css",
        error=None,
        notice=None,
        heading=heading,
        message=text,
    )


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def page_url(issuer: Issuer, page: str, request_id: str) -> str:
    return f"/{issuer.id}/{page}?request={request_id}"


def _refusal(params: AuthorizeParams, user: User) -> tuple[str, str] | None:
    """Why the request cannot end with a code for ``user`` (error, description), if it cannot."""
    if not authorization.hint_matches(params, user.id):
        # Someone else signed in than the id_token_hint names: the client asked for that user only.
        return "login_required", "The signed-in user is not the one id_token_hint names"
    return None


async def proceed(
    request: Request,
    rt: Runtime,
    session: AsyncSession,
    issuer: Issuer,
    client: Client,
    params: AuthorizeParams,
    request_id: str,
    op: Session,
    user: User,
    *,
    new_cookie: str | None = None,
) -> Response:
    """After the user is known: ask for consent if needed, else issue the code and redirect. A
    sign-in to the issuer's own pages (the account portal, an invitation) returns to the page it
    came from instead."""
    iss = issuer_url(rt, issuer.id)
    portal = client.id == PORTAL_CLIENT
    refusal = _refusal(params, user)
    org_step = None
    if not portal and refusal is None:
        org_step = await org_rules.before_code(session, client, params, user.id)
        if org_step is not None and org_step.error is not None:
            # Not a member of the requested organization (decision 18), or of any when one is required.
            refusal = org_step.error
    if portal:
        await authorization.forget(session, request_id)
        await session.commit()
        response = redirect(params.redirect_uri if is_portal_return(issuer.id, params.redirect_uri) else iss)
    elif org_step is not None and org_step.choices is not None:
        await session.commit()
        response = redirect(page_url(issuer, "select-organization", request_id))
    elif refusal is not None:
        await authorization.forget(session, request_id)
        await session.commit()
        response = redirect(authorization.error_redirect(params.redirect_uri, params.state, *refusal, iss))
    elif await authorization.needs_consent(session, client, user.id, params):
        await session.commit()
        response = redirect(page_url(issuer, "consent", request_id))
    elif not await authorization.forget(session, request_id):
        # A concurrent submission of the same request claimed it first: one request, one code.
        await session.rollback()
        return message(request, rt, issuer, SIGN_IN_EXPIRED, EXPIRED)
    else:
        code = await authorization.issue_code(session, issuer, client, op, user, params, rt.settings.code_ttl)
        await session.commit()
        response = redirect(authorization.success_redirect(params, code, iss))
    if new_cookie is not None:
        set_cookie(response, rt, issuer.id, SESSION_COOKIE, new_cookie, op.ttl)
    return response
