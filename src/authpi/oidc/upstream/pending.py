"""Upstream authorization requests in flight (``upstream_requests``): one row per button press,
bound to the pending authorization request and the browser, spent once by its callback."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.crypto.secretbox import SecretBox
from authpi.oidc import pkce
from authpi.storage.tables.upstream import UpstreamRequest

TTL_MS = 10 * 60_000
MAX_STATE = 128


@dataclass(frozen=True)
class Started:
    state: str
    nonce: str
    challenge: str


@dataclass(frozen=True)
class Spent:
    row: UpstreamRequest
    nonce: str
    verifier: str


def _context(row_id: str) -> str:
    return f"upstream_request:{row_id}"


def begin(
    session: AsyncSession,
    box: SecretBox,
    *,
    issuer_id: str,
    method_id: str | None,
    org_id: str | None = None,
    request_id: str,
    browser: str,
) -> Started:
    """A fresh state, nonce and PKCE pair for one trip upstream to a method's provider or an
    organization's SSO connection (added; the caller commits)."""
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    now = now_ms()
    row_id = ids.ulid("upr_")
    session.add(
        UpstreamRequest(
            id=row_id,
            state_digest=hashing.digest(state),
            issuer_id=issuer_id,
            method_id=method_id,
            org_id=org_id,
            request_id=request_id,
            browser=browser,
            sealed=box.seal_json({"nonce": nonce, "verifier": verifier}, _context(row_id)),
            created_at=now,
            expires_at=now + TTL_MS,
        )
    )
    return Started(state, nonce, pkce.s256(verifier))


async def spend(session: AsyncSession, box: SecretBox, issuer_id: str, state: str | None) -> Spent | None:
    """The request ``state`` answers, deleted so it serves once (also against a concurrent
    callback); None when it is unknown, another issuer's, expired or already spent."""
    if not state or len(state) > MAX_STATE:
        return None
    digest = hashing.digest(state)
    found = await session.scalar(select(UpstreamRequest).where(UpstreamRequest.state_digest == digest))
    if found is None or found.issuer_id != issuer_id:
        return None
    result = await session.execute(
        delete(UpstreamRequest)
        .where(UpstreamRequest.id == found.id)
        .execution_options(synchronize_session=False)
    )
    session.expunge(found)
    if result.rowcount != 1 or found.expires_at <= now_ms():  # type: ignore[attr-defined]
        return None
    secret = box.open_json(found.sealed, _context(found.id))
    return Spent(found, str(secret["nonce"]), str(secret["verifier"]))
