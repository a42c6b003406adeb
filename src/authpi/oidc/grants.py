"""The token endpoint's three grants (idp-api §A.4, decisions 11 to 14)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.oidc import organizations as org_rules
from authpi.oidc import pkce, tokens
from authpi.oidc.context import openid, signing_alg, single, ttl
from authpi.oidc.errors import OAuthError, invalid_grant, invalid_request
from authpi.oidc.keys import IssuerKeys
from authpi.services import events
from authpi.services import organizations as org_service
from authpi.services import sessions as session_service
from authpi.services.machine_tokens import IssuedToken, MachineTokenLog
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.oauth import AuthorizationCode, RefreshToken
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

MAX_TTL = 21 * 86400


@dataclass(frozen=True)
class Grant:
    issuer: Issuer
    client: Client
    keys: IssuerKeys
    iss: str


def _audience(resources: list[str], client_id: str) -> str | list[str]:
    """Decision 13: one resource → that string, several → an array, none → the client ID."""
    if not resources:
        return client_id
    return resources[0] if len(resources) == 1 else resources


def _registered(client: Client, resources: list[str]) -> list[str]:
    """Decision 34: every resource (and so every ``aud``) must be registered on the client now;
    a grant made before the list was narrowed does not keep the removed ones."""
    allowed = openid(client).get("allowed_resources") or []
    if not set(resources) <= set(allowed):
        raise OAuthError("invalid_target", "resource is not registered for this client")
    return resources


def _requested_resources(client: Client, form: dict[str, list[str]], authorized: list[str]) -> list[str]:
    requested = list(dict.fromkeys(form.get("resource", [])))
    if not requested:
        return _registered(client, authorized)
    if not set(requested) <= set(authorized):
        raise OAuthError("invalid_target", "resource must be among those authorized")
    return _registered(client, requested)


def _allowed_grant(client: Client, grant_type: str) -> None:
    if grant_type not in openid(client).get("grant_types", []):
        raise OAuthError("unauthorized_client", f"This client may not use the {grant_type} grant")


async def _active_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None or user.status != "active":
        raise invalid_grant("The user is not active")
    return user


def _response(
    access: tokens.Minted,
    expires_in: int,
    scope: str,
    *,
    id_token: str | None = None,
    refresh: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if refresh:
        body["refresh_token"] = refresh
    if id_token:
        body["id_token"] = id_token
    return body


@dataclass(frozen=True)
class _TokenSet:
    """A signed token response, not yet recorded: the refresh token's row is added (and the
    session touched) by ``_record`` once the grant is sure to succeed."""

    body: dict[str, Any]
    refresh_row: RefreshToken | None


async def _mint(
    session: AsyncSession,
    grant: Grant,
    user: User,
    rp: Session,
    *,
    scope: str,
    full_scope: str,
    resources: list[str],
    granted_resources: list[str],
    nonce: str | None,
    with_refresh: bool,
    org_id: str | None,
    any_membership: bool = True,
) -> _TokenSet:
    """Reads what the tokens say (the organizations claim) and signs them; writes nothing."""
    issuer, client, keys = grant.issuer, grant.client, grant.keys
    alg = signing_alg(client)
    scopes = set(scope.split())
    access_ttl = min(ttl(issuer, client, "access_token_ttl"), MAX_TTL)
    organizations = await org_rules.claim(session, client, user.id, org_id, any_membership=any_membership)
    access = tokens.access_token(
        keys,
        alg,
        iss=grant.iss,
        sub=user.id,
        aud=_audience(resources, client.id),
        client_id=client.id,
        scope=scope,
        ttl=access_ttl,
        dat_type="identity",
        auth_time=rp.auth_time,
        sid=rp.id,
        organizations=organizations,
        org_id=org_id,
    )
    id_tok = None
    if "openid" in scopes:
        id_tok = tokens.id_token(
            keys,
            alg,
            iss=grant.iss,
            sub=user.id,
            client_id=client.id,
            ttl=min(ttl(issuer, client, "id_token_ttl"), MAX_TTL),
            auth_time=rp.auth_time,
            sid=rp.id,
            nonce=nonce,
            access=access.token,
            profile_claims=tokens.profile_claims(user.profile, user.username, user.username_type, scopes),
            organizations=organizations,
            org_id=org_id,
            amr=list((rp.authentication or {}).get("amr") or []),
        )
    refresh_value = None
    refresh_row = None
    if with_refresh:
        refresh = tokens.refresh_token(
            keys,
            alg,
            iss=grant.iss,
            sub=user.id,
            client_id=client.id,
            sid=rp.id,
            scope=full_scope,
            ttl=min(ttl(issuer, client, "refresh_token_ttl"), MAX_TTL),
            org_id=org_id,
        )
        refresh_row = RefreshToken(
            jti=refresh.jti,
            issuer_id=issuer.id,
            session_id=rp.id,
            client_id=client.id,
            user_id=user.id,
            scope=full_scope,
            # Like the scope, the family keeps the whole authorized set (RFC 8707 §2.2).
            resources=granted_resources,
            org_id=org_id,
            status="active",
            created_at=0,  # set by _record
            expires_at=refresh.exp * 1000,
        )
        refresh_value = refresh.token
    body = _response(access, access_ttl, scope, id_token=id_tok, refresh=refresh_value)
    return _TokenSet(body, refresh_row)


def _record(session: AsyncSession, rp: Session, minted: _TokenSet) -> dict[str, Any]:
    """Adds the token set's rows to the caller's transaction; returns the response body."""
    now = now_ms()
    if minted.refresh_row is not None:
        minted.refresh_row.created_at = now
        session.add(minted.refresh_row)
        rp.refresh_token_issued_at = now
    rp.status = "active"
    rp.status_at = rp.status_at or now
    rp.access_token_issued_at = now
    session_service.touch(rp, now)
    return minted.body


async def _user_tokens(
    session: AsyncSession, grant: Grant, user: User, rp: Session, **options: Any
) -> dict[str, Any]:
    return _record(session, rp, await _mint(session, grant, user, rp, **options))


async def authorization_code(
    session: AsyncSession, grant: Grant, form: dict[str, list[str]]
) -> dict[str, Any]:
    _allowed_grant(grant.client, "authorization_code")
    code = single(form, "code")
    redirect_uri = single(form, "redirect_uri")
    verifier = single(form, "code_verifier")
    if not code or not redirect_uri:
        raise invalid_request("code and redirect_uri are required")
    row = await session.get(AuthorizationCode, hashing.digest(code))
    if row is None or row.issuer_id != grant.issuer.id or row.client_id != grant.client.id:
        raise invalid_grant("The authorization code is invalid")
    # Claim the code atomically: of two concurrent exchanges only one wins.
    claimed = await session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_digest == row.code_digest, AuthorizationCode.used_at.is_(None))
        .values(used_at=now_ms())
    )
    rp, anchored = await session_service.get_anchored(session, row.rp_session_id)
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        # A replayed code revokes everything issued with it (RFC 6749 §4.1.2).
        if rp is not None:
            await session_service.revoke(session, rp, "authorization_code_reuse")
        await events.emit(
            session,
            "auth.flow.replay-attempt",
            subject={"type": "session", "id": row.rp_session_id},
            data={"grant_type": "authorization_code", "session_revoked": rp is not None},
            account_id=grant.issuer.account_id,
            issuer_id=grant.issuer.id,
            user_id=row.user_id,
            client_id=grant.client.id,
        )
        await session.commit()
        raise invalid_grant("The authorization code was already used")
    if row.expires_at <= now_ms():
        await session.commit()
        raise invalid_grant("The authorization code has expired")
    if row.redirect_uri != redirect_uri:
        await session.commit()
        raise invalid_grant("redirect_uri does not match the authorization request")
    if row.code_challenge is not None:
        if verifier is None or not pkce.verify(verifier, row.code_challenge):
            await session.commit()
            raise invalid_grant("PKCE verification failed")
    elif verifier is not None:
        raise invalid_grant("code_verifier was sent but no code_challenge was used")
    if rp is None or not anchored or not session_service.usable(rp):
        await session.commit()
        raise invalid_grant("The session behind this code has ended or is suspended")
    resources = _requested_resources(grant.client, form, list(row.resources))
    user = await _active_user(session, row.user_id)
    with_refresh = "refresh_token" in openid(grant.client).get("grant_types", [])
    body = await _user_tokens(
        session,
        grant,
        user,
        rp,
        scope=row.scope,
        full_scope=row.scope,
        resources=resources,
        granted_resources=list(row.resources),
        nonce=row.nonce,
        with_refresh=with_refresh,
        org_id=row.org_id,
    )
    await session.commit()
    return body


_OP = aliased(Session)
# A refresh reads the token, its session (and whether the op session still anchors it), the user and
# whether the user has any organization membership in one statement; every check works on these.
_REFRESH_STATE = (
    select(
        RefreshToken,
        Session,
        _OP.status,
        _OP.expires_at,
        User,
        org_service.has_token_memberships(RefreshToken.user_id),
    )
    .outerjoin(Session, Session.id == RefreshToken.session_id)
    .outerjoin(_OP, _OP.id == Session.op_session_id)
    .outerjoin(User, User.id == RefreshToken.user_id)
)


@dataclass(frozen=True)
class _RefreshState:
    token: RefreshToken
    rp: Session | None
    anchored: bool
    user: User | None
    any_membership: bool


async def _refresh_state(session: AsyncSession, jti: str) -> _RefreshState | None:
    found = (await session.execute(_REFRESH_STATE.where(RefreshToken.jti == jti))).first()
    if found is None:
        return None
    row, rp, op_status, op_expires_at, user, any_membership = found
    anchored = rp is not None and session_service.anchor_holds(rp.op_session_id, op_status, op_expires_at)
    return _RefreshState(row, rp, anchored, user, bool(any_membership))


async def refresh_token(session: AsyncSession, grant: Grant, form: dict[str, list[str]]) -> dict[str, Any]:
    _allowed_grant(grant.client, "refresh_token")
    presented = single(form, "refresh_token")
    if not presented:
        raise invalid_request("refresh_token is required")
    verified = tokens.verify(grant.keys, presented, grant.iss)
    if verified is None or verified.is_access_token:
        raise invalid_grant("The refresh token is invalid or expired")
    found = await _refresh_state(session, str(verified.claims.get("jti", "")))
    if found is None:
        raise invalid_grant("The refresh token is invalid")
    row, rp, anchored, user = found.token, found.rp, found.anchored, found.user
    if row.client_id != grant.client.id or row.issuer_id != grant.issuer.id:
        raise invalid_grant("The refresh token is invalid")
    if row.status == "rotated":
        # Decision 12: presenting a rotated token is reuse; the whole family goes.
        if rp is not None:
            await session_service.mark_compromised(session, rp, "refresh_token_reuse")
        await session.commit()
        raise invalid_grant("The refresh token was already used")
    if row.status != "active" or row.expires_at <= now_ms():
        raise invalid_grant("The refresh token has been revoked or has expired")
    if rp is None or not anchored or session_service.effective_status(rp) != "active":
        raise invalid_grant("The session has ended or is suspended")
    if user is None or user.status != "active":
        raise invalid_grant("The user is not active")
    granted = row.scope.split()
    requested_scope = single(form, "scope")
    scope = row.scope
    if requested_scope is not None:
        narrowed = requested_scope.split()
        if not set(narrowed) <= set(granted):
            raise OAuthError("invalid_scope", "A refresh may narrow the scope, never widen it")
        scope = " ".join(s for s in granted if s in narrowed)
    resources = _requested_resources(grant.client, form, list(row.resources))
    # Signed before the rotation claims the old token: the claim is the transaction's first write
    # (on SQLite, where the database's write lock is taken), and signing is not done holding it.
    minted = await _mint(
        session,
        grant,
        user,
        rp,
        scope=scope,
        full_scope=row.scope,
        resources=resources,
        granted_resources=list(row.resources),
        nonce=None,
        with_refresh=True,
        org_id=row.org_id,
        any_membership=found.any_membership,
    )
    # The event is built (snapshot, scrubbing) before the claim too, with the count it records.
    refresh_count = (rp.refresh_count or 0) + 1
    refreshed = await session_service.prepare_event(
        session,
        "session.token-refreshed",
        rp,
        account_id=grant.issuer.account_id,
        data={"refresh_count": refresh_count},
    )
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == row.jti, RefreshToken.status == "active")
        .values(status="rotated")
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session_service.mark_compromised(session, rp, "refresh_token_reuse")
        await session.commit()
        raise invalid_grant("The refresh token was already used")
    rp.refresh_count = refresh_count
    await events.record(session, refreshed)
    body = _record(session, rp, minted)
    await session.commit()
    return body


def client_credentials(
    grant: Grant, form: dict[str, list[str]], machine_tokens: MachineTokenLog
) -> dict[str, Any]:
    client = grant.client
    _allowed_grant(client, "client_credentials")
    if not client.confidential:
        raise OAuthError("unauthorized_client", "Public clients cannot use client_credentials")
    configured = list(client.scopes or [])
    requested = single(form, "scope")
    if requested is None:
        scopes = configured  # decision 14: all configured scopes
    else:
        scopes = list(dict.fromkeys(requested.split()))
        if not set(scopes) <= set(configured):
            raise OAuthError("invalid_scope", "The client may not request these scopes")
    resources = _registered(client, list(dict.fromkeys(form.get("resource", []))))
    access_ttl = min(ttl(grant.issuer, client, "access_token_ttl"), MAX_TTL)
    scope = " ".join(scopes)
    access = tokens.access_token(
        grant.keys,
        signing_alg(client),
        iss=grant.iss,
        sub=client.id,
        aud=_audience(resources, client.id),
        client_id=client.id,
        scope=scope,
        ttl=access_ttl,
        dat_type="client",
    )
    # No database here: this grant serves from cached rows and keys (fast, and through a database
    # outage); machine.token.issued is queued for the worker's batched writer.
    machine_tokens.record(
        IssuedToken.now(
            account_id=grant.issuer.account_id,
            issuer_id=grant.issuer.id,
            client_id=client.id,
            scopes=scopes,
            audience=_audience(resources, client.id),
            ttl=access_ttl,
        )
    )
    return _response(access, access_ttl, scope)
