"""Server-side checks of a token beyond its signature: revocation, the client it was issued to,
and the liveness of its session (and of the op session above it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.oidc import tokens
from authpi.oidc.context import load_client
from authpi.oidc.keys import IssuerKeys
from authpi.services import sessions as session_service
from authpi.storage.tables.oauth import RefreshToken, RevokedToken
from authpi.storage.tables.sessions import Session


async def _client_active(session: AsyncSession, issuer_id: str, verified: tokens.Verified) -> bool:
    """Tokens die with their client: a disabled or deleted client's tokens are inactive everywhere.
    The client row is cached per worker, so this rarely costs a query."""
    client_id = verified.claims.get("client_id")
    return isinstance(client_id, str) and await load_client(session, issuer_id, client_id) is not None


async def _session_live(session: AsyncSession, sid: str) -> bool:
    """The token's session and its op session, in one statement."""
    rp, anchored = await session_service.get_anchored(session, sid)
    return rp is not None and anchored and session_service.usable(rp)


_RP = Session
_OP = session_service.OP_SESSION


# Built once (building a select per request costs more than running it): whether the token's ID is
# revoked, alone or beside its session and the op session above it.
_REVOKED = exists().where(RevokedToken.jti == bindparam("jti")).label("revoked")
_TOKEN_REVOKED = select(_REVOKED)
_TOKEN_STATE = (
    select(
        _REVOKED,
        _RP.status,
        _RP.expires_at,
        _RP.last_activity_at,
        _RP.created_at,
        _RP.idle_timeout,
        _RP.op_session_id,
        _OP.status.label("op_status"),
        _OP.expires_at.label("op_expires_at"),
    )
    .outerjoin(_OP, _OP.id == _RP.op_session_id)
    .where(_RP.id == bindparam("sid"))
)


async def _access_token_live(session: AsyncSession, issuer_id: str, verified: tokens.Verified) -> bool:
    """Not revoked, its client active, its session (and the op session above it) usable: the client
    from the worker's row cache, the rest in one statement of plain columns."""
    if not await _client_active(session, issuer_id, verified):
        return False
    jti = str(verified.claims.get("jti", ""))
    sid = verified.claims.get("sid")
    if sid is None:
        return not await session.scalar(_TOKEN_REVOKED, {"jti": jti})
    found = (await session.execute(_TOKEN_STATE, {"jti": jti, "sid": str(sid)})).first()
    if found is None:
        return False
    if found.revoked or not session_service.anchor_holds(
        found.op_session_id, found.op_status, found.op_expires_at
    ):
        return False
    status = session_service.status_at_time(
        found.status, found.expires_at, found.last_activity_at, found.created_at, found.idle_timeout, now_ms()
    )
    return status in ("active", "inactive")


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
