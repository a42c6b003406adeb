"""Setting an authenticator app up at sign-in (``/mfa/enroll``): a QR code of the ``otpauth://``
URI and the secret as text, then the first code confirms it (``POST /{issuer_id}/mfa/enroll/totp``).

The pending verifier is reused while it lives, so reloading the page shows the same secret. The
first code is also this sign-in's second factor; the user's first second factor comes with backup
codes, shown once before the sign-in continues.
"""

from __future__ import annotations

import logging

import segno
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi import i18n
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, Flow
from authpi.oidc.signin.methods.totp.login import AMR, WRONG_CODE
from authpi.services import totp, verifiers
from authpi.services.errors import ServiceError
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import Verifier

router = Routes()
log = logging.getLogger(__name__)
ORIGIN = "signin"  # marks enrollments started on these pages (the Core API starts its own)
EXPIRED_ENROLLMENT = _l("This setup has expired. Scan the new code below.")
NOT_AVAILABLE = _l(
    "An authenticator app cannot be set up for this account. Contact the application's administrator."
)


def action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/mfa/enroll/totp"


async def pending_enrollment(
    session: AsyncSession, box: SecretBox, issuer: Issuer, user: User, origin: str
) -> tuple[Verifier, str, str]:
    """The user's live enrollment started from ``origin`` (these pages, the account portal), or a
    new one: (verifier, secret, otpauth URI). Reloading the page shows the same secret."""
    found = await session.scalars(
        select(Verifier)
        .where(
            Verifier.user_id == user.id,
            Verifier.type == verifiers.TOTP,
            Verifier.status == "pending",
            Verifier.expires_at > now_ms() + 60_000,  # at least a minute left to type a code
        )
        .order_by(Verifier.id.desc())
    )
    for row in found:
        if (row.metadata_ or {}).get("origin") == origin:
            secret = verifiers.open_secret(box, row)
            uri = await verifiers.provisioning_uri(session, issuer, user, row, secret)
            return row, secret, uri
    enrollment = await verifiers.start_totp(session, box, issuer, user, origin=origin)
    await session.commit()
    return enrollment.verifier, enrollment.secret, enrollment.provisioning_uri


def _qr_title(request: Request, flow: Flow) -> str:
    """The QR code's accessible name, written into the SVG now, so in the page's language now."""
    with i18n.use(flow.locale(request)):
        return str(_l("QR code for your authenticator app"))


def qr_svg(uri: str, title: str | None = None) -> str:
    """The provisioning URI as an inline SVG; ``title`` (its accessible name) in the page's language."""
    name = title if title is not None else str(_l("QR code for your authenticator app"))
    return str(segno.make(uri, error="m").svg_inline(scale=5, title=name))


async def enrollment_page(
    request: Request, flow: Flow, user: User, *, error: Text | None = None, status: int = 200
) -> Response:
    try:
        box = flow.rt.secretbox
        row, secret, uri = await pending_enrollment(flow.session, box, flow.issuer, user, ORIGIN)
    except ServiceError as exc:  # e.g. the user already has as many verifiers as allowed
        log.info("authenticator app enrollment refused: %s", exc.description)
        return flow.message(request, SIGN_IN_UNAVAILABLE, NOT_AVAILABLE, 409)
    return flow.render(
        request,
        "totp/enroll.html",
        status,
        action=action(flow),
        others_url=flow.others_url,
        qr_svg=qr_svg(uri, _qr_title(request, flow)),
        secret=totp.grouped(secret),
        enrollment_id=row.id,
        error=error,
    )


@router.post("/{issuer_id}/mfa/enroll/totp")
async def confirm(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        owed = await flow.second_factor(request, verifiers.TOTP, enrolling=True)
        if isinstance(owed, Response):
            return owed
        user, method = owed
        enrollment_id = flow.form.get("enrollment", "")[:64]
        try:
            check = await verifiers.complete_totp(
                session, flow.rt.secretbox, flow.issuer, user, enrollment_id, flow.form.get("code", "")
            )
        except ServiceError:
            await session.rollback()
            return await enrollment_page(request, flow, user, error=EXPIRED_ENROLLMENT, status=400)
        if not check.success:
            await session.commit()
            text = {
                verifiers.LOCKED: flows.locked_text(check.locked_for_ms),
                verifiers.EXPIRED: EXPIRED_ENROLLMENT,
            }
            return await enrollment_page(
                request, flow, user, error=text.get(check.error or "", WRONG_CODE), status=400
            )
        flow.prove(user, flows.factor(method.method, method.id, AMR))
        if not check.backup_codes:
            return await flow.advance(request, user)
        await flow.save()
        await session.commit()
        return flow.render(
            request,
            "totp/backup_codes.html",
            continue_action=f"/{flow.issuer.id}/mfa/continue",
            codes=check.backup_codes,
        )
