"""GET|POST /{issuer_id}/logout: RP-initiated logout (idp-api §A.8, decision 16).

Only the browser's own sign-in is ever ended here. An ``id_token_hint`` identifies the client
(for ``post_logout_redirect_uri``) and, when it is an unexpired ID token of this browser's current
session, lets the confirmation be skipped (OpenID Connect RP-Initiated Logout 1.0 §2). Any other
hint, and every expired one, still needs the confirmed POST; and no hint ends a session that is
not this browser's: an ID token travels through URLs and logs, so it is never the authority to
end a sign-in.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_s
from authpi.i18n import _l
from authpi.oidc import authorization, redirect_uris, tokens
from authpi.oidc.browser import SESSION_COOKIE, Csrf, clear_cookie
from authpi.oidc.context import issuer_url, load_client, load_issuer, openid, parse_form, runtime
from authpi.oidc.pages import message, redirect, render
from authpi.oidc.routes import Routes
from authpi.services import sessions as session_service
from authpi.storage.tables.clients import Client
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

router = Routes()
SIGNED_OUT = (_l("Signed out"), _l("You have been signed out."))
CANNOT = _l("Cannot sign out")


async def _params(request: Request) -> dict[str, str]:
    params = {k: v[0] for k, v in parse_form(request.url.query).items()}
    if request.method == "POST":
        params.update({k: v[0] for k, v in parse_form(await request.body(), 32 * 1024).items()})
    return params


def _is_id_token(verified: tokens.Verified) -> bool:
    # Of the provider's tokens only ID tokens carry ``azp``; access tokens are typed at+jwt.
    return not verified.is_access_token and "azp" in verified.claims


def _hinted_client_id(hint: tokens.Verified) -> str:
    aud = hint.claims.get("aud")
    return aud if isinstance(aud, str) else (str(aud[0]) if isinstance(aud, list) and aud else "")


async def _names_this_browser(session: AsyncSession, hint: tokens.Verified | None, browser: Session) -> bool:
    """Whether ``hint`` is an unexpired ID token of one of the browser's current client sessions,
    for the user signed in there: only then may the confirmation be skipped."""
    if hint is None or int(hint.claims["exp"]) <= now_s():
        return False
    sid = hint.claims.get("sid")
    rp = await session.get(Session, sid) if isinstance(sid, str) else None
    return (
        rp is not None
        and rp.type == "rp"
        and rp.op_session_id == browser.id
        and rp.client_id == _hinted_client_id(hint)
        and rp.user_id == browser.user_id == hint.claims.get("sub")
    )


def _confirmed(request: Request, params: dict[str, str], csrf: Csrf) -> bool:
    return request.method == "POST" and params.get("confirm") == "yes" and csrf.valid(params.get("csrf"))


@router.api_route("/{issuer_id}/logout", methods=["GET", "POST"])
async def logout(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    params = await _params(request)
    # RP-Initiated Logout 1.0 §2: the RP may ask for the language of these pages.
    asked = params.get("ui_locales", "")[: authorization.MAX_LENGTHS["ui_locales"]]
    request.state.ui_locales = authorization.language_tags(asked)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        iss = issuer_url(rt, issuer.id)
        client: Client | None = None
        hint: tokens.Verified | None = None
        if params.get("id_token_hint"):
            raw = params["id_token_hint"]
            # Expired hints still identify the client (RP-Initiated Logout 1.0 §2), nothing more.
            hint = tokens.verify(await rt.keys.for_token(issuer.id, raw), raw, iss, allow_expired=True)
            if hint is None or not _is_id_token(hint):
                return message(request, rt, issuer, CANNOT, _l("The id_token_hint is not valid."))
            hinted_client = _hinted_client_id(hint)
            if params.get("client_id") and params["client_id"] != hinted_client:
                return message(
                    request, rt, issuer, CANNOT, _l("The client_id does not match the id_token_hint.")
                )
            client = await load_client(session, issuer.id, hinted_client)
        elif params.get("client_id"):
            client = await load_client(session, issuer.id, params["client_id"])

        target = params.get("post_logout_redirect_uri")
        if target and (client is None or target not in openid(client).get("post_logout_redirect_uris", [])):
            return message(request, rt, issuer, CANNOT, _l("The post-logout redirect URI is not registered."))

        secret = request.cookies.get(SESSION_COOKIE)
        browser = await session_service.find_by_cookie(session, issuer.id, secret) if secret else None
        if browser is not None:
            csrf = Csrf(rt, request)
            if not (await _names_this_browser(session, hint, browser) or _confirmed(request, params, csrf)):
                user = await session.get(User, browser.user_id)
                carry = [
                    (k, params[k])
                    for k in ("post_logout_redirect_uri", "state", "ui_locales")
                    if params.get(k)
                ]
                if client is not None:
                    carry.append(("client_id", client.id))
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
            await session_service.revoke(session, browser, "logout")
            await session.commit()

    if target:
        response = redirect(redirect_uris.with_params(target, {"state": params.get("state")}))
    else:
        response = message(request, rt, issuer, *SIGNED_OUT, status=200)
    clear_cookie(response, rt, issuer.id, SESSION_COOKIE)
    return response
