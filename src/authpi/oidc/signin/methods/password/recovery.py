"""Password reset (``/{issuer_id}/password/reset``), the password method's recovery step.

1. ``GET ?request=…`` asks for the identifier; ``POST`` sends an email with a link and a code
   (``delivery.send``: cooldown, send limits, a decoy for unknown identifiers: the answer and its
   page are the same whether or not the account exists, and no mail goes out for an unknown one).
2. Either the link (``GET ?token=…``, from any browser: the mailbox is the proof) or the code
   (``POST /password/reset/code``, in the browser that asked, with the decision-20 lockout) leads to
   a new password, checked against the password policy before the link or code is spent.
3. The new password ends every session and refresh token of the user, and the user is told by email
   (``services.password_reset``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_ms
from authpi.crypto import passwords
from authpi.i18n import Text, _l, _ln
from authpi.oidc.browser import Csrf
from authpi.oidc.context import issuer_url, load_issuer, runtime
from authpi.oidc.pages import locale_for, message, page_url, rate_limited, render
from authpi.oidc.routes import Routes
from authpi.oidc.signin import delivery
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, TOO_MANY, Flow
from authpi.oidc.signin.methods.password import credentials
from authpi.runtime import Runtime
from authpi.services import lockouts, password_reset, users
from authpi.services import one_time_codes as otc
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.one_time_codes import OneTimeCode

router = Routes()
TTL_S = 30 * 60
MAX_IDENTIFIER = 320
MAX_TOKEN = 128
MAX_PASSWORD = 1024
LINK_INVALID = _l("This reset link is not valid any more: it was used, it expired, or a newer one was sent.")
WRONG_CODE = _l("That code is not right, or it expired. Check it or ask for a new one.")
MISMATCH = _l("The two passwords are not the same.")


def reset_url(flow: Flow) -> str:
    return flow.page_url("password/reset")


def _action(issuer_id: str, suffix: str = "") -> str:
    return f"/{issuer_id}/password/reset{suffix}"


def request_page(
    request: Request, flow: Flow, username: str = "", *, error: Text | None = None, status: int = 200
) -> Response:
    return flow.render(
        request,
        "password/reset_request.html",
        status,
        action=_action(flow.issuer.id),
        restart_url=flow.page_url("login"),
        username=username,
        error=error,
    )


def sent_page(
    request: Request,
    flow: Flow,
    username: str,
    challenge: str,
    *,
    error: Text | None = None,
    notice: Text | None = None,
    status: int = 200,
) -> Response:
    return flow.render(
        request,
        "password/reset_sent.html",
        status,
        action=_action(flow.issuer.id, "/code"),
        resend_action=_action(flow.issuer.id),
        restart_url=flow.page_url("login"),
        username=username,
        challenge=challenge,
        error=error,
        notice=notice,
    )


async def _usable(flow: Flow) -> bool:
    method = await credentials.password_method(flow.session, flow.issuer.id)
    return method is not None and method.enabled_login


@router.get("/{issuer_id}/password/reset")
async def reset_page(issuer_id: str, request: Request) -> Response:
    token = request.query_params.get("token")
    if token is not None:
        return await link_page(issuer_id, request, token)
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=False)
        if isinstance(flow, Response):
            return flow
        if not await _usable(flow):
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("Passwords are switched off."))
        username = request.query_params.get("username", "")[:MAX_IDENTIFIER]
        return request_page(request, flow, username)


@router.post("/{issuer_id}/password/reset")
async def request_reset(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        if not await _usable(flow):
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("Passwords are switched off."))
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        if not username:
            return request_page(request, flow, error=_l("Enter your email or username."), status=400)
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        user = await users.find_by_username(session, flow.issuer.id, username)
        base = issuer_url(flow.rt, flow.issuer.id)
        sent = await delivery.send(
            request,
            flow.rt,
            session,
            flow.issuer,
            purpose=otc.PASSWORD_RESET,
            channel="email",
            key=users.login_key(username),
            user=user,
            template="password_reset",
            context=lambda issued: {
                "link": f"{base}/password/reset?token={issued.link_token}",
                "code": issued.code,
                "minutes": TTL_S // 60,
            },
            ttl_ms=TTL_S * 1000,
            request_id=flow.request_id,
            browser=flow.browser(),
            code=True,
            link=True,
        )
        if isinstance(sent, Response):
            return sent
        if sent.issued is not None and user is not None and delivery.recipient_of(user, "email"):
            await password_reset.requested(session, flow.issuer, user)
            await session.commit()
        notice = None
        if sent.wait_s:
            notice = _ln(
                "An email was sent moments ago. You can ask for another in %(n)s second.",
                "An email was sent moments ago. You can ask for another in %(n)s seconds.",
                sent.wait_s,
            )
        return sent_page(request, flow, username, sent.row.id if sent.row else "", notice=notice)


def _new_password_problem(form: dict[str, str], policy: dict[str, Any]) -> Text | None:
    """What is wrong with the new password (the policy of sign-up), checked before anything is spent."""
    password = form.get("password", "")[:MAX_PASSWORD]
    if password != form.get("confirm", "")[:MAX_PASSWORD]:
        return MISMATCH
    problems = users.policy_problems(policy, password)
    return credentials.policy_text(problems[0], policy) if problems else None


@router.post("/{issuer_id}/password/reset/code")
async def reset_with_code(issuer_id: str, request: Request) -> Response:
    """The code from the email and the new password, in the browser that asked."""
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        challenge = flow.form.get("challenge", "")[:64]
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        method = await credentials.password_method(session, flow.issuer.id)
        if method is None or not method.enabled_login:
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("Passwords are switched off."))
        problem = _new_password_problem(flow.form, credentials.password_policy(method))
        if problem is not None:
            return sent_page(request, flow, username, challenge, error=problem, status=400)
        row = await otc.get(session, challenge) if challenge else None
        if row is None or not _bound(row, flow):
            return sent_page(request, flow, username, "", error=WRONG_CODE, status=400)
        code_id, user_id, subject = row.id, row.user_id, f"{otc.PASSWORD_RESET}:{row.data.get('key', '')}"
        policy = lockouts.Policy.of(flow.issuer)
        attempt = await lockouts.count_attempt(
            session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject, policy
        )
        if not attempt.allowed:
            error = flows.locked_text(attempt.locked_for_ms)
            return sent_page(request, flow, username, code_id, error=error, status=400)
        # Hashed before the code is checked: the check's transaction then stays short.
        password_hash = await passwords.hash_password(flow.form.get("password", "")[:MAX_PASSWORD])
        check = await otc.check_code(
            session, flow.rt.secretbox, code_id=code_id, code=flow.form.get("code", ""), commit=False
        )
        if not check.success or user_id is None:
            await session.commit()
            error = WRONG_CODE
            if attempt.number >= policy.max_failures:
                error = flows.locked_text(policy.duration_s * 1000)
            return sent_page(request, flow, username, code_id, error=error, status=400)
        await lockouts.clear(session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject)
        return await _finish(request, flow.rt, session, flow.issuer, user_id, password_hash, row.request_id)


def _bound(row: OneTimeCode, flow: Flow) -> bool:
    return (
        row.issuer_id == flow.issuer.id
        and row.purpose == otc.PASSWORD_RESET
        and row.request_id == flow.request_id
        and row.browser == flow.browser()
    )


async def link_page(issuer_id: str, request: Request, token: str) -> Response:
    """The link from the email: the new-password form (nothing is spent by opening it, so a mail
    scanner that follows links uses nothing up)."""
    rt = runtime(request)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        row = await otc.find_link(
            session, issuer_id=issuer.id, token=token[:MAX_TOKEN], purpose=otc.PASSWORD_RESET
        )
        if row is None or row.user_id is None or row.consumed_at is not None or row.expires_at <= now_ms():
            return message(request, rt, issuer, _l("Reset link not valid"), LINK_INVALID)
        return _link_form(request, rt, issuer, token)


def _link_form(
    request: Request, rt: Runtime, issuer: Issuer, token: str, *, error: Text | None = None, status: int = 200
) -> Response:
    return render(
        request,
        rt,
        issuer,
        Csrf(rt, request),
        "password/reset_new.html",
        status,
        action=_action(issuer.id, "/link"),
        token=token,
        error=error,
    )


@router.post("/{issuer_id}/password/reset/link")
async def reset_with_link(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        form = await flows.read_form(request)
        if not Csrf(rt, request).valid(form.get("csrf")):
            text = _l("Your session form expired. Open the link from the email again.")
            return message(request, rt, issuer, _l("Please try again"), text, 403)
        token = form.get("token", "")[:MAX_TOKEN]
        limited = await rate_limited(request, rt, issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        method = await credentials.password_method(session, issuer.id)
        if method is None or not method.enabled_login:
            return message(request, rt, issuer, SIGN_IN_UNAVAILABLE, _l("Passwords are switched off."))
        problem = _new_password_problem(form, credentials.password_policy(method))
        if problem is not None:
            return _link_form(request, rt, issuer, token, error=problem, status=400)
        password_hash = await passwords.hash_password(form.get("password", "")[:MAX_PASSWORD])
        redeemed = await otc.redeem_link(
            session, issuer_id=issuer.id, token=token, purpose=otc.PASSWORD_RESET, commit=False
        )
        user_id = redeemed.row.user_id if redeemed.success and redeemed.row is not None else None
        if redeemed.row is None or user_id is None:
            await session.rollback()
            return message(request, rt, issuer, _l("Reset link not valid"), LINK_INVALID)
        return await _finish(request, rt, session, issuer, user_id, password_hash, redeemed.row.request_id)


async def _finish(
    request: Request,
    rt: Runtime,
    session: AsyncSession,
    issuer: Issuer,
    user_id: str,
    password_hash: str,
    request_id: str | None,
) -> Response:
    """Set the new password (the code or link is spent in this same transaction)."""
    user = await users.lock(session, user_id)
    if user is None or user.issuer_id != issuer.id or user.status != "active":
        await session.rollback()
        return message(
            request, rt, issuer, _l("Reset link not valid"), _l("This account cannot sign in."), 403
        )
    await password_reset.complete(
        session,
        rt.secretbox,
        issuer,
        user,
        password_hash,
        notify=delivery.recipient_of(user, "email"),
        locale=locale_for(request, issuer),  # the language of the page that set it
    )
    await session.commit()
    login = page_url(issuer, "login", request_id) if request_id else None
    return render(
        request,
        rt,
        issuer,
        Csrf(rt, request),
        "password/reset_done.html",
        200,
        login_url=login,
    )
