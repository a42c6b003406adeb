"""Sign-in links: ``POST /{issuer_id}/login/email-link`` mails one, ``GET /{issuer_id}/email-link/{token}``
lands on it.

A link is single use, lives ``settings.ttl`` seconds (15 minutes by default), is stored only as its
SHA-256, and belongs to the browser that asked for it (the digest of its CSRF cookie) and to that
browser's pending authorization request:

- Opened in that browser, it signs in at once.
- Opened anywhere else (another browser, a phone, a mail scanner following links), it signs nobody
  in: the page says where it was asked for and offers to sign in *that* browser, which takes the
  4-digit number the asking browser shows. Someone who tricked a user into asking for a link from
  the attacker's browser cannot get it approved without that number, and a scanner spends nothing.
  After the confirmation, the asking browser continues with "Continue".
"""

from __future__ import annotations

import hmac
import secrets

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.i18n import Text, _l, _ln
from authpi.oidc.browser import Csrf
from authpi.oidc.context import issuer_url, load_issuer, runtime
from authpi.oidc.pages import message, rate_limited, render
from authpi.oidc.routes import Routes
from authpi.oidc.signin import delivery
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, TOO_MANY, Flow
from authpi.services import events, users
from authpi.services import one_time_codes as otc
from authpi.services.auth_method_types import TYPES
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.one_time_codes import OneTimeCode

router = Routes()
METHOD = "email_link"
AMR = ("otp",)  # RFC 8176 has no value for a mailed link; it is a one-time secret sent out of band
MAX_IDENTIFIER = 320
MAX_TOKEN = 128
NOT_VALID = _l("This sign-in link is not valid. Ask for a new one on the sign-in page.")
USED = _l("This sign-in link was already used. Ask for a new one on the sign-in page.")
EXPIRED_LINK = _l("This sign-in link has expired. Ask for a new one on the sign-in page.")
NOT_YET = _l("Not confirmed yet. Open the link from the email here, or confirm it on the other device.")


def start_action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/login/email-link"


def _ttl_s(method: AuthMethod) -> int:
    return int({**TYPES[METHOD].defaults, **(method.settings or {})}["ttl"])


def sent_page(
    request: Request,
    flow: Flow,
    username: str,
    row: OneTimeCode | None,
    *,
    notice: Text | None = None,
    error: Text | None = None,
    status: int = 200,
) -> Response:
    return flow.render(
        request,
        "email_link/sent.html",
        status,
        action=f"/{flow.issuer.id}/login/email-link/continue",
        resend_action=start_action(flow),
        restart_url=flow.page_url("login"),
        username=username,
        challenge=row.id if row is not None else "",
        number=str((row.data or {}).get("number", "")) if row is not None else "",
        notice=notice,
        error=error,
    )


async def send_link(request: Request, flow: Flow, method: AuthMethod, username: str) -> Response:
    limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
    if limited is not None:
        return limited
    user = await users.find_by_username(flow.session, flow.issuer.id, username)
    ttl_s = _ttl_s(method)
    base = issuer_url(flow.rt, flow.issuer.id)
    sent = await delivery.send(
        request,
        flow.rt,
        flow.session,
        flow.issuer,
        purpose=otc.SIGN_IN_LINK,
        channel="email",
        key=users.login_key(username),
        user=user,
        template="sign_in_link",
        context=lambda issued: {
            "link": f"{base}/email-link/{issued.link_token}",
            "minutes": max(1, ttl_s // 60),
        },
        ttl_ms=ttl_s * 1000,
        request_id=flow.request_id,
        browser=flow.browser(),
        code=False,
        link=True,
        data={"method_id": method.id, "number": f"{secrets.randbelow(10_000):04d}"},
    )
    if isinstance(sent, Response):
        return sent
    if sent.issued is not None and user is not None and delivery.recipient_of(user, "email"):
        await _emit(flow.session, flow.issuer, "user.login-link.requested", sent.issued.row)
        await flow.session.commit()
    notice = None
    if sent.wait_s:
        notice = _ln(
            "A link was sent moments ago. You can ask for a new one in %(n)s second.",
            "A link was sent moments ago. You can ask for a new one in %(n)s seconds.",
            sent.wait_s,
        )
    return sent_page(request, flow, username, sent.row, notice=notice)


async def _emit(session: AsyncSession, issuer: Issuer, kind: str, row: OneTimeCode) -> None:
    await events.emit(
        session,
        kind,
        subject={"type": "user", "id": row.user_id or ""},
        data={"user_id": row.user_id},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=row.user_id,
    )


@router.post("/{issuer_id}/login/email-link")
async def request_link(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        method = await flow.method_of_type(METHOD)
        if method is None:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        if not username:
            return flow.message(request, _l("Sign-in expired"), _l("Start again and enter your identifier."))
        return await send_link(request, flow, method, username)


async def _sign_in(request: Request, flow: Flow, method: AuthMethod, row: OneTimeCode) -> Response:
    """Spend the link and finish the first factor for its user (in this transaction)."""
    user_id = row.user_id
    if user_id is None or not await otc.consume(flow.session, row.id):
        await flow.session.rollback()
        return flow.message(request, _l("Link not valid"), USED)
    user = await users.lock(flow.session, user_id)
    if user is None or user.issuer_id != flow.issuer.id or user.status != "active":
        await flow.session.rollback()
        return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This account cannot sign in."), 403)
    await _emit(flow.session, flow.issuer, "user.login-link.consumed", row)
    return await flow.passed(request, user, flows.factor(method.method, method.id, AMR))


async def _flow_event(flow_issuer: Issuer, request: Request, kind: str, row: OneTimeCode) -> None:
    async with runtime(request).sessions() as session:
        await events.emit(
            session,
            kind,
            subject={"type": "issuer", "id": flow_issuer.id},
            data={"kind": "login_link"},
            account_id=flow_issuer.account_id,
            issuer_id=flow_issuer.id,
            user_id=row.user_id,
        )
        await session.commit()


async def _landing(issuer_id: str, request: Request) -> tuple[Issuer, OneTimeCode] | Response:
    rt = runtime(request)
    token = request.path_params.get("token", "")[:MAX_TOKEN]
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        limited = await rate_limited(request, rt, issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        row = await otc.find_link(session, issuer_id=issuer.id, token=token, purpose=otc.SIGN_IN_LINK)
    if row is None or row.user_id is None:
        return message(request, rt, issuer, _l("Link not valid"), NOT_VALID)
    if row.consumed_at is not None:
        await _flow_event(issuer, request, "auth.flow.replay-attempt", row)
        return message(request, rt, issuer, _l("Link already used"), USED)
    if row.expires_at <= now_ms():
        await _flow_event(issuer, request, "auth.flow.expired", row)
        return message(request, rt, issuer, _l("Link expired"), EXPIRED_LINK)
    return issuer, row


@router.get("/{issuer_id}/email-link/{token}")
async def open_link(issuer_id: str, request: Request) -> Response:
    landed = await _landing(issuer_id, request)
    if isinstance(landed, Response):
        return landed
    issuer, row = landed
    async with runtime(request).sessions() as session:
        csrf = Csrf(runtime(request), request)
        # The browser that asked presents the CSRF cookie whose digest the link was bound to.
        elsewhere = csrf.fresh or row.browser is None
        if elsewhere or not hmac.compare_digest(str(row.browser), hashing.digest(csrf.cookie)):
            await _flow_event(issuer, request, "auth.flow.device-mismatch", row)
            return render(
                request,
                runtime(request),
                issuer,
                csrf,
                "email_link/confirm.html",
                200,
                action=str(request.url.path),
            )
        flow = await flows.load_sign_in(request, session, issuer_id, post=False, request_id=row.request_id)
        if isinstance(flow, Response):
            return flow
        method = await flow.method_of_type(METHOD)
        if method is None or row.data.get("method_id") != method.id:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        return await _sign_in(request, flow, method, row)


@router.post("/{issuer_id}/email-link/{token}")
async def confirm_elsewhere(issuer_id: str, request: Request) -> Response:
    """The number typed on the other device: right, the asking browser may continue; wrong, the
    link is spent (one try)."""
    rt = runtime(request)
    form = await flows.read_form(request)
    landed = await _landing(issuer_id, request)
    if isinstance(landed, Response):
        return landed
    issuer, row = landed
    if not Csrf(rt, request).valid(form.get("csrf")):
        return message(
            request, rt, issuer, _l("Please try again"), _l("The form expired. Open the link again."), 403
        )
    expected = str(row.data.get("number", ""))
    typed = form.get("number", "").strip()[:8]
    right = bool(expected) and hmac.compare_digest(typed, expected)
    async with rt.sessions() as session:
        taken = await otc.confirm_elsewhere(session, code_id=row.id, approved=right)
        await session.commit()
    if not taken:
        return message(request, rt, issuer, _l("Link already used"), USED)
    if not right:
        text = _l("That number does not match, so this link no longer works. Ask for a new one.")
        return message(request, rt, issuer, _l("Not confirmed"), text)
    text = _l("Go back to the browser where you asked for the link and press Continue there.")
    return message(request, rt, issuer, _l("Confirmed"), text, 200)


@router.post("/{issuer_id}/login/email-link/continue")
async def continue_after_confirmation(issuer_id: str, request: Request) -> Response:
    """The asking browser, once the link was confirmed on another device."""
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        method = await flow.method_of_type(METHOD)
        if method is None:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        challenge = flow.form.get("challenge", "")[:64]
        row = await otc.get(session, challenge) if challenge else None
        bound = (
            row is not None
            and row.issuer_id == flow.issuer.id
            and row.purpose == otc.SIGN_IN_LINK
            and row.request_id == flow.request_id
            and row.browser == flow.browser()
            and row.data.get("method_id") == method.id
        )
        if row is None or not bound:
            return sent_page(request, flow, username, None, error=NOT_VALID, status=400)
        if row.consumed_at is not None or row.expires_at <= now_ms():
            return sent_page(request, flow, username, None, error=USED, status=400)
        if not row.data.get("approved_at"):
            return sent_page(request, flow, username, row, error=NOT_YET, status=400)
        return await _sign_in(request, flow, method, row)
