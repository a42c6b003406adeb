"""The link of an address-proving email: ``GET /{issuer_id}/verify-email/{token}`` shows what it
confirms and ``POST`` (the button, with its CSRF token) confirms it, so a mail scanner opening the
link changes nothing. Any browser may confirm: the link proves the mailbox, which is the point.
A sign-up's account is created then; a changed address replaces the old one then."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_ms
from authpi.i18n import _l
from authpi.oidc.browser import Csrf
from authpi.oidc.context import load_issuer, parse_form, runtime
from authpi.oidc.pages import message, rate_limited, render
from authpi.oidc.routes import Routes
from authpi.services import email_verification, one_time_codes
from authpi.storage.tables.one_time_codes import OneTimeCode

router = Routes()
PURPOSES = (email_verification.SIGNUP, email_verification.CHANGE)
GONE = _l("This link has expired or was already used. Ask for a new one.")
MAX_TOKEN = 128


async def _find(session: AsyncSession, issuer_id: str, token: str) -> OneTimeCode | None:
    for purpose in PURPOSES:
        row = await one_time_codes.find_link(session, issuer_id=issuer_id, token=token, purpose=purpose)
        if row is not None:
            return row
    return None


@router.get("/{issuer_id}/verify-email/{token}")
@router.post("/{issuer_id}/verify-email/{token}")
async def verify_email(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    token = str(request.path_params["token"])[:MAX_TOKEN]
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        csrf = Csrf(rt, request)
        row = await _find(session, issuer.id, token)
        if row is None or row.consumed_at is not None or row.expires_at <= now_ms():
            return message(request, rt, issuer, _l("Link expired"), GONE)
        email = str(row.data.get("email", ""))
        if request.method == "GET":
            return render(
                request,
                rt,
                issuer,
                csrf,
                "verify_link.html",
                action=f"/{issuer.id}/verify-email/{token}",
                email=email,
            )
        form = {k: v[0] for k, v in parse_form(await request.body(), 4096).items()}
        if not csrf.valid(form.get("csrf")):
            text = _l("Your session form expired. Go back and retry.")
            return message(request, rt, issuer, _l("Please try again"), text, 403)
        limited = await rate_limited(request, rt, issuer, "login", _l("Too many attempts. Wait and retry."))
        if limited is not None:
            return limited
        spent = await one_time_codes.redeem_link(
            session, issuer_id=issuer.id, token=token, purpose=row.purpose, commit=False
        )
        if not spent.success or spent.row is None:
            await session.rollback()
            return message(request, rt, issuer, _l("Link expired"), GONE)
        if row.purpose == email_verification.SIGNUP:
            await email_verification.create_account(session, issuer, spent.row.data)
            text = _l("Your email address is confirmed. You can now sign in.")
        else:
            changed = await email_verification.apply_change(session, issuer, str(row.user_id), email)
            if changed is None:
                await session.rollback()
                text = _l("This address cannot be used.")
                return message(request, rt, issuer, _l("Address not changed"), text, 409)
            text = _l("Your email address is now %(email)s.").format(email=email)
        await session.commit()
        return message(request, rt, issuer, _l("Email confirmed"), text, 200)
