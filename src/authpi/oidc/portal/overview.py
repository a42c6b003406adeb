"""``GET /{issuer_id}/account``: the portal's one page, every section of the signed-in user's
account on it. Each section's module gives its part (``view``) and handles its own forms; a
change comes back here with a fixed notice (``?done=``), a refused one renders the page with
its error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.portal import access
from authpi.oidc.portal.access import Portal
from authpi.oidc.routes import Routes
from authpi.services import account, email_verification, trusted_devices, verifiers
from authpi.storage.tables.auth_methods import AuthMethod

router = Routes()

NOTICES = {
    "profile": _l("Your profile is saved."),
    "new_password": _l("Your password is changed. Your other sign-ins have ended."),
    "session": _l("That sign-in has ended."),
    "email": _l("Your email address is changed."),
    "phone": _l("Your phone number is changed."),
    "consent": _l("The application no longer has your consent; it will ask again next time."),
    "authenticator": _l("Your authenticator app is set up."),
    "new_passkey": _l("Your passkey is added."),
    "factor": _l("The sign-in method is removed."),
    "device": _l("The device is no longer trusted."),
    "devices": _l("No device is trusted any more."),
}


PROFILE_LABELS = {
    "name": _l("Full name"),
    "given_name": _l("Given name"),
    "family_name": _l("Family name"),
    "nickname": _l("Nickname"),
    "locale": _l("Language (e.g. en-GB)"),
    "zoneinfo": _l("Time zone (e.g. Europe/Paris)"),
}


def when(ms: int | None) -> Text:
    if not ms:
        return _l("never")
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def methods(portal: Portal) -> dict[str, AuthMethod]:
    """The issuer's methods switched on for sign-in, by type (what the portal can set up)."""
    rows = await portal.session.scalars(select(AuthMethod).where(AuthMethod.issuer_id == portal.issuer.id))
    return {row.method: row for row in rows.all() if row.enabled_login}


async def view(portal: Portal) -> dict[str, Any]:
    user, session = portal.user, portal.session
    enabled = await methods(portal)
    mine = await verifiers.list_for_user(session, user.id)
    active = [v for v in mine if v.status == "active"]
    backup = [v for v in active if v.type == verifiers.BACKUP_CODES]
    remaining = await verifiers.remaining_codes(session, [v.id for v in backup])
    return {
        "profile": {key: user.profile.get(key, "") for key in account.PROFILE_FIELDS},
        "profile_fields": account.PROFILE_FIELDS,
        "profile_labels": PROFILE_LABELS,
        "email": email_verification.address_of(user),
        "email_verified": user.profile.get("email_verified") is True,
        "phone": email_verification.phone_of(user),
        "phone_verified": user.profile.get("phone_number_verified") is True,
        "has_password": user.password_hash is not None,
        "sign_ins": [
            {
                "id": row.id,
                "current": row.id == portal.op.id,
                "device": ((row.device or {}).get("user_agent") or "")[:120] or _l("Unknown browser"),
                "method": (row.authentication or {}).get("method", ""),
                "created": when(row.created_at),
                "last_active": when(row.last_activity_at),
            }
            for row in await account.sign_ins(session, user)
        ],
        "consents": [
            {"id": g.consent.id, "client": g.client_name, "scopes": " ".join(g.consent.scopes)}
            for g in await account.consents(session, user)
        ],
        "totps": [
            {"id": v.id, "name": v.name, "added": when(v.created_at), "last_used": when(v.last_used_at)}
            for v in active
            if v.type == verifiers.TOTP
        ],
        "passkeys": [
            {"id": v.id, "name": v.name, "added": when(v.created_at), "last_used": when(v.last_used_at)}
            for v in active
            if v.type == verifiers.PASSKEY
        ],
        "code_sets": [{"id": v.id, "remaining": remaining.get(v.id, 0)} for v in backup],
        "can_totp": verifiers.TOTP in enabled,
        "can_passkey": verifiers.PASSKEY in enabled,
        "devices": [
            {"id": d.id, "name": d.name or d.user_agent or _l("A browser"), "expires": when(d.expires_at)}
            for d in await trusted_devices.list_for_user(session, user.id)
        ],
    }


async def page(
    request: Request,
    portal: Portal,
    *,
    status: int = 200,
    error: Text | None = None,
    notice: Text | None = None,
) -> Response:
    # After a refused change's rollback or a commit the rows are expired: read them again.
    await portal.session.refresh(portal.user)
    await portal.session.refresh(portal.op)
    return portal.render(
        request, "account/index.html", status, error=error, notice=notice, **await view(portal)
    )


@router.get("/{issuer_id}/account")
async def overview(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        portal = await access.load(request, session, issuer_id, post=False)
        if isinstance(portal, Response):
            return portal
        notice = NOTICES.get(request.query_params.get("done", ""))
        return await page(request, portal, notice=notice)
