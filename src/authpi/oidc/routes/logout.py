"""GET|POST /{issuer_id}/logout: RP-initiated logout (idp-api §A.8, decision 16)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc import redirect_uris, tokens
from authpi.oidc.browser import SESSION_COOKIE, Csrf, clear_cookie
from authpi.oidc.context import issuer_url, load_client, load_issuer, openid, parse_form, runtime
from authpi.oidc.pages import message, redirect, render
from authpi.oidc.routes import Routes
from authpi.services import sessions as session_service
from authpi.storage.tables.clients import Client
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

router = Routes()
SIGNED_OUT = ("Signed out", "You have been signed out.")


async def _params(request: Request) -> dict[str, str]:
    params = {k: v[0] for k, v in parse_form(request.url.query).items()}
    if request.method == "POST":
        params.update({k: v[0] for k, v in parse_form(await request.body(), 32 * 1024).items()})
    return params


@router.api_route("/{issuer_id}/logout", methods=["GET", "POST"])
async def logout(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    params = await _params(request)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        iss = issuer_url(rt, issuer.id)
        client: Client | None = None
        hinted: Session | None = None
        hint = params.get("id_token_hint")
        if hint:
            verified = tokens.verify(await rt.keys.for_token(issuer.id, hint), hint, iss, allow_expired=True)
            if verified is None or verified.is_access_token:
                return message(request, rt, issuer, "Cannot sign out", "The id_token_hint is not valid.")
            aud = verified.claims.get("aud")
            hinted_client = aud if isinstance(aud, str) else (aud[0] if isinstance(aud, list) and aud else "")
            if params.get("client_id") and params["client_id"] != hinted_client:
                return message(
                    request, rt, issuer, "Cannot sign out", "client_id does not match the id_token_hint."
                )
            client = await load_client(session, issuer.id, str(hinted_client))
            hinted = await session.get(Session, str(verified.claims.get("sid", "")))
        elif params.get("client_id"):
            client = await load_client(session, issuer.id, params["client_id"])

        target = params.get("post_logout_redirect_uri")
        if target and (client is None or target not in openid(client).get("post_logout_redirect_uris", [])):
            return message(
                request, rt, issuer, "Cannot sign out", "The post-logout redirect URI is not registered."
            )

        secret = request.cookies.get(SESSION_COOKIE)
        browser = await session_service.find_by_cookie(session, issuer.id, secret) if secret else None
        csrf = Csrf(rt, request)
        if hinted is None and browser is not None:
            confirmed = (
                request.method == "POST" and params.get("confirm") == "yes" and csrf.valid(params.get("csrf"))
            )
            if not confirmed:
                user = await session.get(User, browser.user_id)
                carry = [
                    (k, params[k])
                    for k in ("post_logout_redirect_uri", "state", "client_id")
                    if params.get(k)
                ]
                return render(
                    request,
                    rt,
                    issuer,
                    csrf,
                    "logout.html",
                    action=f"/{issuer.id}/logout",
                    username=user.username if user else "",
                    carry=carry,
                )

        ended = [s for s in (hinted, browser) if s is not None]
        for row in ended:
            op = (
                await session.get(Session, row.op_session_id)
                if row.type == "rp" and row.op_session_id
                else row
            )
            await session_service.revoke(session, op or row, "logout")
        await session.commit()

    if target:
        response = redirect(redirect_uris.with_params(target, {"state": params.get("state")}))
    else:
        response = message(request, rt, issuer, *SIGNED_OUT, status=200)
    clear_cookie(response, rt, issuer.id, SESSION_COOKIE)
    return response
