"""Server-side checks of a token beyond its signature: revocation, the client it was issued to,
and the liveness of its session (and of the op session above it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.oidc import tokens
from authpi.oidc.context import load_client
from authpi.oidc.keys import IssuerKeys
from authpi.services import sessions as session_service
from authpi.storage.tables.oauth import RefreshToken, RevokedToken


async def _client_active(session: AsyncSession, issuer_id: str, verified: tokens.Verified) -> bool:
    """Tokens die with their client: a disabled or deleted client's tokens are inactive everywhere.
    The client row is cached per worker, so this rarely costs a query."""
    client_id = verified.claims.get("client_id")
    return isinstance(client_id, str) and await load_client(session, issuer_id, client_id) is not None


async def _session_live(session: AsyncSession, sid: str) -> bool:
    """The token's session and its op session, in one statement."""
    rp, anchored = await session_service.get_anchored(session, sid)
    return rp is not None and anchored and session_service.usable(rp)


async def _access_token_live(session: AsyncSession, issuer_id: str, verified: tokens.Verified) -> bool:
    if not await _client_active(session, issuer_id, verified):
        return False
    if await session.get(RevokedToken, str(verified.claims.get("jti", ""))) is not None:
        return False
    sid = verified.claims.get("sid")
    return sid is None or await _session_live(session, str(sid))


async def check_access_token(
    session: AsyncSession, keys: IssuerKeys, presented: str, iss: str, issuer_id: str
) -> tokens.Verified | None:
    verified = tokens.verify(keys, presented, iss)
    if verified is None or not verified.is_access_token:
        return None
    return verified if await _access_token_live(session, issuer_id, verified) else None


async def refresh_row(session: AsyncSession, verified: tokens.Verified) -> RefreshToken | None:
    if verified.is_access_token:
        return None
    return await session.get(RefreshToken, str(verified.claims.get("jti", "")))


async def _refresh_token_live(session: AsyncSession, issuer_id: str, verified: tokens.Verified) -> bool:
    row = await refresh_row(session, verified)
    if row is None or row.status != "active" or row.expires_at <= now_ms():
        return False
    if not await _client_active(session, issuer_id, verified):
        return False
    return await _session_live(session, row.session_id)


async def describe_token(
    session: AsyncSession,
    keys: IssuerKeys,
    presented: str,
    iss: str,
    issuer_id: str,
    client_id: str | None,
) -> dict[str, Any]:
    """RFC 7662 answer; ``client_id`` None means any client's token may be described (Core API)."""
    inactive: dict[str, Any] = {"active": False}
    verified = tokens.verify(keys, presented, iss)
    if verified is None or (client_id is not None and verified.claims.get("client_id") != client_id):
        return inactive
    claims = verified.claims
    if verified.is_access_token:
        live = await _access_token_live(session, issuer_id, verified)
        token_type = "access_token"
    else:
        live = await _refresh_token_live(session, issuer_id, verified)
        token_type = "refresh_token"
    if not live:
        return inactive
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
