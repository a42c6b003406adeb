"""Core API token introspection (idp-api §A.7, last part): API keys of the account, or of an
organization of the issuer, in the form ``key_<id>:<secret>``, and JWTs issued by one of its issuers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.oidc.access import describe_token
from authpi.oidc.keys import KeyCache
from authpi.services import api_keys, org_api_keys
from authpi.storage.tables.api_keys import ApiKey
from authpi.storage.tables.issuers import Issuer


def _inactive(reason: str) -> dict[str, Any]:
    return {"active": False, "reason": reason}


async def _org_key(
    session: AsyncSession, issuer: Issuer, key_id: str, secret: str, ip: str | None
) -> dict[str, Any]:
    checked = await org_api_keys.check(session, issuer.id, key_id, secret, ip)
    if checked.key is None or checked.reason is not None:
        return _inactive(checked.reason or "invalid_credentials")
    return {
        "active": True,
        "token_type": "api_key",
        "sub": checked.key.id,
        "key_id": checked.key.id,
        "org_id": checked.key.org_id,
        "issuer_id": checked.key.issuer_id,
        "scopes": list(checked.key.scopes),
        "expires_at": checked.key.expires_at,
    }


async def _api_key(
    session: AsyncSession, account_id: str, issuer: Issuer, token: str, ip: str | None
) -> dict[str, Any]:
    key_id, _, secret = token.partition(":")
    key = await session.get(ApiKey, key_id)
    if key is None:
        # Not an account key: one of this issuer's organization keys, perhaps.
        return await _org_key(session, issuer, key_id, secret, ip)
    if key is not None and key.account_id != account_id:
        key = None  # another account's key does not exist here
    reason = api_keys.rejection(key, secret, ip)
    if reason is not None or key is None:
        return _inactive(reason or "invalid_credentials")
    return {
        "active": True,
        "token_type": "api_key",
        "sub": key.id,
        "key_id": key.id,
        "account_id": key.account_id,
        "scopes": list(key.scopes),
        "expires_at": key.expires_at,
    }


async def introspect(
    session: AsyncSession,
    keys: KeyCache,
    account_id: str,
    issuer: Issuer,
    iss: str,
    token: str,
    ip: str | None,
) -> dict[str, Any]:
    if token.startswith("key_"):
        return await _api_key(session, account_id, issuer, token, ip)
    if token.count(".") == 2:
        # The provider of a disabled issuer answers nothing, so its tokens are not active either.
        if issuer.status != "active":
            return _inactive("issuer_not_active")
        described = await describe_token(
            session, await keys.for_token(issuer.id, token), token, iss, issuer.id, None
        )
        return described if described["active"] else _inactive("invalid_or_expired")
    return _inactive("unsupported_token_type")
