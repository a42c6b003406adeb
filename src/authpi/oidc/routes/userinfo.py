"""GET|POST /{issuer_id}/userinfo (idp-api §A.5)."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.oidc import organizations as org_rules
from authpi.oidc import tokens
from authpi.oidc.access import check_access_token
from authpi.oidc.context import issuer_url, load_client, load_issuer, runtime
from authpi.oidc.cors import Cors
from authpi.oidc.errors import NO_STORE, OAuthError, bearer_challenge, invalid_token
from authpi.oidc.routes import Routes
from authpi.storage.tables.users import User

router = Routes()
# What the answer reads of the user: plain columns, no entity to track (nor its password hash).
_USER = select(
    User.id,
    User.issuer_id,
    User.status,
    User.profile,
    User.username,
    User.username_type,
    User.created_at,
    User.updated_at,
).where(User.id == bindparam("sub"))


def _bearer(request: Request, realm: str) -> str:
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        # No token at all: a bare challenge, without an error code (RFC 6750 §3.1).
        challenge = {"WWW-Authenticate": bearer_challenge(realm)}
        raise OAuthError("invalid_request", "A Bearer access token is required", 401, challenge)
    return header[7:].strip()


@router.api_route("/{issuer_id}/userinfo", ["GET", "POST"], Cors(("GET", "POST")))
async def userinfo(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    iss = issuer_url(rt, issuer_id)
    presented = _bearer(request, iss)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        keys = await rt.keys.for_token(issuer.id, presented)
        verified = await check_access_token(session, keys, presented, iss, issuer.id)
        if verified is None:
            raise invalid_token(iss, "The access token is invalid, expired or revoked")
        claims = verified.claims
        scopes = set(str(claims.get("scope", "")).split())
        if "openid" not in scopes:
            description = "The access token lacks the openid scope"
            challenge = bearer_challenge(iss, "insufficient_scope", description, scope="openid")
            raise OAuthError("insufficient_scope", description, 403, {"WWW-Authenticate": challenge})
        user = (await session.execute(_USER, {"sub": str(claims.get("sub"))})).first()
        if user is None or user.status != "active" or user.issuer_id != issuer.id:
            raise invalid_token(iss, "The user is no longer active")
        client = await load_client(session, issuer.id, str(claims.get("client_id", "")))
        org_id = claims.get("org_id")
        memberships = await org_rules.visible(session, client, user.id) if client is not None else []
        if org_id:
            memberships = [m for m in memberships if m.org_id == org_id]
        body = {
            "sub": user.id,
            **tokens.profile_claims(user.profile, user.username, user.username_type, scopes),
            # Read now, like the profile: membership changes show here before the next refresh.
            "organizations": [m.claim() for m in memberships],
            "created_at": user.created_at // 1000,
            "updated_at": user.updated_at // 1000,
        }
        if claims.get("org_id"):
            body["org_id"] = claims["org_id"]
    return JSONResponse(body, headers=NO_STORE)
