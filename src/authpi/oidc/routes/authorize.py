"""GET|POST /{issuer_id}/authorize: validate, then resume an existing sign-in or start one."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc import acr, authorization
from authpi.oidc.authorization import PageError, RedirectError
from authpi.oidc.browser import SESSION_COOKIE
from authpi.oidc.context import issuer_url, load_issuer, parse_form, runtime
from authpi.oidc.pages import message, page_url, proceed, rate_limited, redirect
from authpi.oidc.routes import Routes
from authpi.runtime import Runtime
from authpi.services import sessions as session_service
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

router = Routes()


async def current_sign_in(
    request: Request, session: AsyncSession, issuer: Issuer
) -> tuple[Session, User] | None:
    """The browser's live op session and its (active) user, if any."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    op = await session_service.find_by_cookie(session, issuer.id, secret)
    if op is None:
        return None
    user = await session.get(User, op.user_id)
    if user is None or user.status != "active":
        return None
    return op, user


async def _authorize(request: Request, issuer_id: str, query: dict[str, list[str]]) -> Response:
    rt: Runtime = runtime(request)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        # Before validation, so the answer is a page: no redirect URI can be trusted yet.
        # The language the request asks for, even for the pages shown before it is validated.
        asked = query.get("ui_locales", [""])[0][: authorization.MAX_LENGTHS["ui_locales"]]
        request.state.ui_locales = authorization.language_tags(asked)
        text = _l("Too many sign-in requests from your network. Wait a moment and try again.")
        limited = await rate_limited(request, rt, issuer, "authorize", text)
        if limited is not None:
            return limited
        iss = issuer_url(rt, issuer.id)
        try:
            client, params = await authorization.validate(session, issuer, query)
            await authorization.read_id_token_hint(rt.keys, issuer.id, iss, query, params)
        except PageError as exc:
            return message(request, rt, issuer, _l("This sign-in link is not valid"), exc.message)
        except RedirectError as exc:
            return redirect(
                authorization.error_redirect(exc.redirect_uri, exc.state, exc.error, exc.description, iss)
            )

        def fail(error: str, description: str) -> Response:
            return redirect(
                authorization.error_redirect(params.redirect_uri, params.state, error, description, iss)
            )

        signed_in = await current_sign_in(request, session, issuer)
        op = signed_in[0] if signed_in else None
        if "none" in params.prompt:
            if signed_in is None or authorization.needs_login(params, op):
                return fail("login_required", "The user is not signed in")
            if not acr.satisfied(params.acr_values, (signed_in[0].authentication or {}).get("amr") or []):
                return fail("interaction_required", "The request needs a second factor")
            if await authorization.needs_consent(session, client, signed_in[1].id, params):
                return fail("consent_required", "The user has not consented to this client")
        login_needed = signed_in is None or authorization.needs_login(params, op)
        if login_needed and not portal_enabled(issuer.settings, "login"):
            # Signing in is switched off: the client learns it and can tell its user.
            return fail("access_denied", "Signing in is switched off for this issuer")
        request_id = await authorization.remember(session, issuer, params)
        if login_needed or signed_in is None:
            hint = f"&{urlencode({'login_hint': params.login_hint})}" if params.login_hint else ""
            return redirect(page_url(issuer, "login", request_id) + hint)
        if not acr.satisfied(params.acr_values, (signed_in[0].authentication or {}).get("amr") or []):
            # Step-up: the session proved one factor and the request asks for more; /mfa asks only
            # for the second one (or lets the session stand when the user can give none).
            return redirect(page_url(issuer, "mfa", request_id))
        if "select_account" in params.prompt:
            return redirect(page_url(issuer, "select-account", request_id))
        return await proceed(request, rt, session, issuer, client, params, request_id, *signed_in)


@router.get("/{issuer_id}/authorize")
async def authorize_get(issuer_id: str, request: Request) -> Response:
    return await _authorize(request, issuer_id, parse_form(request.url.query))


@router.post("/{issuer_id}/authorize")
async def authorize_post(issuer_id: str, request: Request) -> Response:
    return await _authorize(request, issuer_id, parse_form(await request.body()))
