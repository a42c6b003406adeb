"""What every portal page starts with: the issuer's portal switched on, the browser's sign-in (or
a trip through the sign-in pages and back), a valid CSRF token on every POST, and for sensitive
changes a recent sign-in (``REAUTH_MAX_AGE``), else the user proves who they are again
(``prompt=login``) and comes back to the portal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_s
from authpi.crypto import hashing
from authpi.i18n import Text, _l
from authpi.oidc.browser import Csrf
from authpi.oidc.context import load_issuer, parse_form, runtime
from authpi.oidc.pages import message, page_url, rate_limited, redirect, render
from authpi.oidc.portal import client
from authpi.oidc.routes.authorize import current_sign_in
from authpi.runtime import Runtime
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

# A sensitive change (password, second factors, passkeys, trusted devices) needs a sign-in at most
# this old (seconds); an older one signs in again first.
REAUTH_MAX_AGE = 600
FORM_LIMIT = 32 * 1024
TOO_MANY = _l("Too many changes in a short time. Wait and retry.")


@dataclass
class Portal:
    """One portal request: the issuer, the signed-in user and their browser session."""

    rt: Runtime
    session: AsyncSession
    issuer: Issuer
    csrf: Csrf
    form: dict[str, str]
    op: Session
    user: User
    # Passkey ceremonies bind to a pending sign-in request; the portal's bind to the browser only.
    request_id: str | None = None

    def browser(self) -> str:
        return hashing.digest(self.csrf.cookie)

    def url(self, section: str = "") -> str:
        return client.home(self.issuer.id, section)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context = {"username": self.user.username, **context}
        return render(
            request,
            self.rt,
            self.issuer,
            self.csrf,
            template,
            status,
            request_id="",
            trust_device_days=0,
            portal_url=self.url(),
            **context,
        )

    def message(self, request: Request, heading: Text, text: Text, status: int = 400) -> Response:
        return message(request, self.rt, self.issuer, heading, text, status)

    def recent(self) -> bool:
        return now_s() - self.op.auth_time <= REAUTH_MAX_AGE

    def done(self, key: str, anchor: str) -> Response:
        """Back to the overview after a change, with its (fixed) notice."""
        return redirect(f"{self.url()}?done={key}#{anchor}")


async def _sign_in(
    request: Request, session: AsyncSession, issuer: Issuer, back_to: str, again_as: str | None = None
) -> Response:
    # A pending sign-in is a row written for anyone who asks, as at /authorize: limited alike.
    text = _l("Too many sign-in requests from your network. Wait a moment and try again.")
    limited = await rate_limited(request, runtime(request), issuer, "authorize", text)
    if limited is not None:
        return limited
    request_id = await client.sign_in_request(session, issuer, back_to=back_to, again_as=again_as)
    hint = f"&{urlencode({'login_hint': again_as})}" if again_as else ""
    return redirect(page_url(issuer, "login", request_id) + hint)


async def load(
    request: Request,
    session: AsyncSession,
    issuer_id: str,
    *,
    post: bool,
    sensitive: bool = False,
    back_to: str | None = None,
) -> Portal | Response:
    """The portal request, or the page to answer with: the closed page, a refused CSRF token, or
    a redirect to sign in (again, for a ``sensitive`` change after ``REAUTH_MAX_AGE``). The user
    returns to ``back_to`` (by default the overview) once signed in."""
    rt = runtime(request)
    issuer = await load_issuer(session, issuer_id)
    if not portal_enabled(issuer.settings, "account"):
        text = _l("Managing your account here is switched off for this application.")
        return message(request, rt, issuer, _l("Account unavailable"), text, 403)
    csrf = Csrf(rt, request)
    form = {k: v[0] for k, v in parse_form(await request.body(), FORM_LIMIT).items()} if post else {}
    if post and not csrf.valid(form.get("csrf")):
        text = _l("Your session form expired. Go back and retry.")
        return message(request, rt, issuer, _l("Please try again"), text, 403)
    home = client.home(issuer.id)
    signed_in = await current_sign_in(request, session, issuer)
    if signed_in is None:
        return await _sign_in(request, session, issuer, back_to or home)
    op, user = signed_in
    portal = Portal(rt, session, issuer, csrf, form, op, user)
    if post:
        limited = await rate_limited(request, rt, issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
    if sensitive and not portal.recent():
        return await _sign_in(request, session, issuer, back_to or home, again_as=user.username)
    return portal
