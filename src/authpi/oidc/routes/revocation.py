"""POST /{issuer_id}/revoke (RFC 7009) and POST /{issuer_id}/introspect (RFC 7662)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.oidc import tokens
from authpi.oidc.access import describe_token, refresh_row
from authpi.oidc.context import (
    authenticate_client,
    client_credentials,
    issuer_url,
    load_issuer,
    read_form,
    runtime,
    single,
)
from authpi.oidc.cors import Cors
from authpi.oidc.errors import NO_STORE, invalid_request
from authpi.oidc.routes import Routes
from authpi.services import sessions as session_service
from authpi.storage.tables.oauth import RevokedToken
from authpi.storage.tables.sessions import Session

router = Routes()


@router.post("/{issuer_id}/revoke", cors=Cors(("POST",)))
async def revoke(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request)
    presented = single(form, "token")
    if not presented:
        raise invalid_request("token is required")
    creds = client_credentials(request, form)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        client = await authenticate_client(session, issuer.id, creds)
        keys = await rt.keys.for_token(issuer.id, presented)
        verified = tokens.verify(keys, presented, issuer_url(rt, issuer.id))
        # Tokens of other clients, and unknown tokens, are answered 200 and left alone (RFC 7009 §2.2).
        if verified is not None and verified.claims.get("client_id") == client.id:
            family = await refresh_row(session, verified)
            if family is not None:
                rp = await session.get(Session, family.session_id)
                if rp is not None:
                    await session_service.revoke(session, rp, "refresh_token_revoked")
            elif verified.is_access_token:
                jti = str(verified.claims.get("jti", ""))
                if jti and await session.get(RevokedToken, jti) is None:
                    session.add(RevokedToken(jti=jti, expires_at=int(verified.claims["exp"]) * 1000))
            await session.commit()
    return JSONResponse({}, headers=NO_STORE)


@router.post("/{issuer_id}/introspect", cors=Cors(("POST",)))
async def introspect(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request)
    presented = single(form, "token")
    if not presented:
        raise invalid_request("token is required")
    creds = client_credentials(request, form)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        client = await authenticate_client(session, issuer.id, creds, allow_public=False)
        keys = await rt.keys.for_token(issuer.id, presented)
        body = await describe_token(session, keys, presented, issuer_url(rt, issuer.id), issuer.id, client.id)
    return JSONResponse(body, headers=NO_STORE)
