"""A backup code as the second factor: ``POST /{issuer_id}/mfa/backup-codes``. When few codes are
left the user is told so (and ``user.mfa.backup-codes.low`` is recorded) before continuing."""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, Flow
from authpi.services import verifiers
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()
AMR = ("otp",)
WRONG_CODE = "That backup code is not valid or was already used."
TOO_MANY = "Too many attempts. Wait and retry."


def action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/mfa/backup-codes"


def _locked_text(locked_for_ms: int) -> str:
    minutes = -(-locked_for_ms // 60_000)
    return f"Too many failed attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def code_page(request: Request, flow: Flow, *, error: str | None = None, status: int = 200) -> Response:
    return flow.render(
        request,
        "backup_codes/code.html",
        status,
        action=action(flow),
        others_url=flow.others_url,
        error=error,
    )


async def _method(flow: Flow) -> AuthMethod | None:
    row: AuthMethod | None = await flow.session.scalar(
        select(AuthMethod).where(
            AuthMethod.issuer_id == flow.issuer.id, AuthMethod.method == verifiers.BACKUP_CODES
        )
    )
    return row if row is not None and row.enabled_login else None


@router.post("/{issuer_id}/mfa/backup-codes")
async def verify_code(issuer_id: str, request: Request) -> Response:
    from authpi.oidc.signin import policy  # imports the registry, which imports this package

    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        user = await flow.pending_user()
        if user is None or await policy.decide(flow, user) is not policy.Decision.SECOND_FACTOR:
            return flow.expired(request)
        method = await _method(flow)
        if method is None:
            return flow.message(request, SIGN_IN_UNAVAILABLE, "This sign-in method is switched off.")
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        code = flow.form.get("code", "")
        check = await verifiers.spend_backup_code(session, flow.rt.secretbox, flow.issuer, user, code)
        if not check.success:
            await session.commit()
            text = _locked_text(check.locked_for_ms) if check.error == verifiers.LOCKED else WRONG_CODE
            flow.others_url = flow.page_url("mfa") + "&choose=1"
            return code_page(request, flow, error=text, status=400)
        factor = flows.factor(method.method, method.id, AMR)
        remaining = check.remaining or 0
        if remaining > verifiers.LOW_BACKUP_CODES:
            return await flow.passed(request, user, factor)
        flow.prove(user, factor)
        await flow.save()
        await session.commit()
        return flow.render(
            request,
            "backup_codes/low.html",
            continue_action=f"/{flow.issuer.id}/mfa/continue",
            remaining=remaining,
        )
