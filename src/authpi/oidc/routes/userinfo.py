"""GET|POST /{issuer_id}/userinfo (idp-api §A.5)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.oidc import tokens
from authpi.oidc.access import check_access_token
from authpi.oidc.context import issuer_url, load_issuer, runtime
from authpi.oidc.errors import NO_STORE, OAuthError, invalid_token
from authpi.oidc.routes import Routes
from authpi.storage.tables.users import User

router = Routes()


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        raise OAuthError(
            "invalid_request", "A Bearer access token is required", 401, {"WWW-Authenticate": "Bearer"}
        )
    return header[7:].strip()


@router.api_route("/{issuer_id}/userinfo", methods=["GET", "POST"])
async def userinfo(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    presented = _bearer(request)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        keys = await rt.keys.for_token(issuer.id, presented)
        verified = await check_access_token(session, keys, presented, issuer_url(rt, issuer.id), issuer.id)
        if verified is None:
            raise invalid_token("The access token is invalid, expired or revoked")
        claims = verified.claims
        scopes = set(str(claims.get("scope", "")).split())
        if "openid" not in scopes:
            raise OAuthError("insufficient_scope", "The access token lacks the openid scope", 403)
        user = await session.get(User, str(claims.get("sub")))
        if user is None or user.status != "active" or user.issuer_id != issuer.id:
            raise invalid_token("The user is no longer active")
        body = {
            "sub": user.id,
            **tokens.profile_claims(user.profile, user.username, user.username_type, scopes),
            "organizations": [],
            "created_at": user.created_at // 1000,
            "updated_at": user.updated_at // 1000,
        }
        if claims.get("org_id"):
            body["org_id"] = claims["org_id"]
    return JSONResponse(body, headers=NO_STORE)
