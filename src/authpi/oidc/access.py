"""Server-side checks of an access token beyond its signature: revocation and session liveness."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.oidc import tokens
from authpi.oidc.keys import IssuerKeys
from authpi.services import sessions as session_service
from authpi.storage.tables.oauth import RefreshToken, RevokedToken
from authpi.storage.tables.sessions import Session


async def check_access_token(
    session: AsyncSession, keys: IssuerKeys, presented: str, iss: str
) -> tokens.Verified | None:
    verified = tokens.verify(keys, presented, iss)
    if verified is None or not verified.is_access_token:
        return None
    if await session.get(RevokedToken, str(verified.claims.get("jti", ""))) is not None:
        return None
    sid = verified.claims.get("sid")
    if sid is not None:
        rp = await session.get(Session, str(sid))
        if rp is None or not session_service.usable(rp):
            return None
    return verified


async def refresh_row(session: AsyncSession, verified: tokens.Verified) -> RefreshToken | None:
    if verified.is_access_token:
        return None
    return await session.get(RefreshToken, str(verified.claims.get("jti", "")))


async def describe_token(
    session: AsyncSession, keys: IssuerKeys, presented: str, iss: str, client_id: str | None
) -> dict[str, Any]:
    """RFC 7662 answer; ``client_id`` None means any client's token may be described (Core API)."""
    inactive: dict[str, Any] = {"active": False}
    verified = tokens.verify(keys, presented, iss)
    if verified is None or (client_id is not None and verified.claims.get("client_id") != client_id):
        return inactive
    claims = verified.claims
    if verified.is_access_token:
        if await check_access_token(session, keys, presented, iss) is None:
            return inactive
        token_type = "access_token"
    else:
        row = await refresh_row(session, verified)
        rp = await session.get(Session, row.session_id) if row else None
        if row is None or row.status != "active" or row.expires_at <= now_ms() or rp is None:
            return inactive
        if not session_service.usable(rp):
            return inactive
        token_type = "refresh_token"
    keep = (
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "sid",
        "client_id",
        "scope",
        "dat",
        "organizations",
        "org_id",
    )
    return {"active": True, "token_type": token_type, **{k: claims[k] for k in keep if k in claims}}
