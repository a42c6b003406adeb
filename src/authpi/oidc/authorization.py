"""The authorization-code flow up to the redirect (idp-api §A.3): validating /authorize,
remembering the request while the user signs in, and issuing the code."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms, now_s
from authpi.crypto import hashing
from authpi.i18n import Text, _l
from authpi.oidc import pkce, redirect_uris, tokens
from authpi.oidc.context import load_client, openid
from authpi.oidc.keys import KeyCache
from authpi.services import events
from authpi.services import sessions as session_service
from authpi.storage.dialects import upsert
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.oauth import AuthorizationCode, AuthorizationRequest, Consent
from authpi.storage.tables.sessions import Session
from authpi.storage.tables.users import User

STANDARD_SCOPES = ("openid", "profile", "email", "phone", "address", "offline_access")
PROMPTS = ("none", "login", "consent", "select_account")
# Request objects and self-registration (OIDC Core §3.1.2.6): unsupported, so refused, not ignored.
UNSUPPORTED = (
    ("request", "request_not_supported"),
    ("request_uri", "request_uri_not_supported"),
    ("registration", "registration_not_supported"),
)
REQUEST_TTL_MS = 30 * 60 * 1000
# Longest value accepted for each parameter, so an unauthenticated request cannot make the server
# store much: well above any real value (login_hint: an email address; code_challenge: 43).
MAX_LENGTHS = {
    "client_id": 64,
    "redirect_uri": 2048,
    "response_type": 32,
    "scope": 2048,
    "state": 2048,
    "nonce": 512,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "prompt": 64,
    "max_age": 10,
    "login_hint": 320,
    "acr_values": 512,
    "org": 64,
    "resource": 512,
    "ui_locales": 256,
}
MAX_RESOURCES = 10
MAX_UI_LOCALES = 10
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
# What one pending request may store (its params as JSON), whatever the combination of values.
MAX_STORED_BYTES = 8 * 1024


class PageError(Exception):
    """The request cannot be trusted to redirect anywhere: show an error page instead."""

    def __init__(self, message: Text) -> None:
        super().__init__(str(message))
        self.message = message


class RedirectError(Exception):
    """An error reported back to the client's (validated) redirect URI."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.state = state
        self.error = error
        self.description = description


@dataclass
class AuthorizeParams:
    client_id: str
    redirect_uri: str
    scope: list[str]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    prompt: list[str]
    max_age: int | None
    login_hint: str | None
    org: str | None
    resources: list[str] = field(default_factory=list)
    # Requested authentication context classes, in order of preference (OIDC Core §3.1.2.1).
    acr_values: list[str] = field(default_factory=list)
    # The ``sub`` of a verified id_token_hint: only that user may be signed in (OIDC Core §3.1.2.1).
    hinted_sub: str | None = None
    # The end user's preferred languages for the hosted pages, in order (OIDC Core §3.1.2.1).
    ui_locales: list[str] = field(default_factory=list)
    # A sign-in of the issuer's own pages (``portal.client.PORTAL_CLIENT``) for an invitation: the
    # invited address, which sign-up may use on an invite-only issuer.
    invited_email: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"{name} was sent more than once")
    return values[0]


def _too_long(query: dict[str, list[str]]) -> str | None:
    """A description of the first parameter over its length cap, if any."""
    for name, values in query.items():
        limit = MAX_LENGTHS.get(name)
        if limit is not None and any(len(value) > limit for value in values):
            return f"{name} is longer than {limit} characters"
    return None


def _echoed_state(query: dict[str, list[str]]) -> str | None:
    """The state to send back with an error: none when it is over its cap (it was not accepted)."""
    state = query.get("state", [None])[0]
    return state if state is None or len(state) <= MAX_LENGTHS["state"] else None


def language_tags(value: str) -> list[str]:
    """The well-formed BCP 47 tags of a ``ui_locales`` value, in order. Only a preference: anything
    else in it is ignored, never an error (OIDC Core: a language the OP lacks is not one)."""
    return [tag for tag in dict.fromkeys(value.split()) if _LANGUAGE_TAG.match(tag)][:MAX_UI_LOCALES]


def stored_size(params: AuthorizeParams) -> int:
    return len(json.dumps(params.as_dict(), separators=(",", ":")))


async def validate(
    session: AsyncSession, issuer: Issuer, query: dict[str, list[str]]
) -> tuple[Client, AuthorizeParams]:
    try:
        client_id = _one(query, "client_id") or ""
        redirect_uri = _one(query, "redirect_uri") or ""
    except ValueError as exc:
        raise PageError(_l("The client_id or redirect_uri parameter was sent more than once.")) from exc
    client = await load_client(session, issuer.id, client_id)
    if client is None:
        raise PageError(_l("Unknown or inactive client."))
    settings = openid(client)
    native = client.application_type == "native"
    if not redirect_uri or not redirect_uris.matches(
        redirect_uri, settings.get("redirect_uris", []), native=native
    ):
        raise PageError(_l("The redirect URI is not registered for this client."))

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, _echoed_state(query), error, description)

    too_long = _too_long(query)
    if too_long is not None:
        raise fail("invalid_request", too_long)

    for name, error in UNSUPPORTED:
        if name in query:
            raise fail(error, f"The {name} parameter is not supported")
    try:
        state = _one(query, "state")
        response_type = _one(query, "response_type")
        scope_param = _one(query, "scope") or ""
        nonce = _one(query, "nonce")
        challenge = _one(query, "code_challenge")
        method = _one(query, "code_challenge_method")
        prompt_param = _one(query, "prompt") or ""
        max_age_param = _one(query, "max_age")
        login_hint = _one(query, "login_hint")
        org = _one(query, "org")
        acr_param = _one(query, "acr_values") or ""
        ui_locales_param = _one(query, "ui_locales") or ""
    except ValueError as exc:
        raise fail("invalid_request", str(exc)) from exc
    if response_type != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported")
    if "authorization_code" not in settings.get("grant_types", []):
        raise fail("unauthorized_client", "This client may not use the authorization code flow")
    requested = scope_param.split()
    if "openid" not in requested:
        raise fail("invalid_scope", "The openid scope is required")
    # Decision 34: the OIDC scopes, plus only what the client is registered for. Anything else is
    # dropped rather than refused, as RFC 6749 §3.3 allows.
    allowed = set(STANDARD_SCOPES) | set(client.scopes or [])
    scopes = [s for s in dict.fromkeys(requested) if s in allowed]
    if challenge is None and not client.confidential:
        raise fail("invalid_request", "PKCE (code_challenge with S256) is required for public clients")
    if challenge is not None:
        if (method or "plain") != "S256":
            raise fail("invalid_request", "Only the S256 code_challenge_method is supported")
        if not pkce.valid_challenge(challenge):
            raise fail("invalid_request", "code_challenge must be 43 base64url characters")
    prompt = prompt_param.split()
    if any(p not in PROMPTS for p in prompt) or ("none" in prompt and len(prompt) > 1):
        raise fail("invalid_request", "Invalid prompt value")
    max_age = None
    if max_age_param is not None:
        if not max_age_param.isdigit():
            raise fail("invalid_request", "max_age must be a non-negative integer")
        max_age = int(max_age_param)
    resources = query.get("resource", [])
    registered = settings.get("allowed_resources") or []
    if any(r not in registered for r in resources) or len(resources) > MAX_RESOURCES:
        raise fail("invalid_target", "Each resource must be registered for this client")
    params = AuthorizeParams(
        client_id=client.id,
        redirect_uri=redirect_uri,
        scope=scopes,
        state=state,
        nonce=nonce,
        code_challenge=challenge,
        prompt=prompt,
        max_age=max_age,
        login_hint=login_hint,
        org=org,
        resources=list(dict.fromkeys(resources)),
        acr_values=list(dict.fromkeys(acr_param.split()))[:10],
        ui_locales=language_tags(ui_locales_param),
    )
    if stored_size(params) > MAX_STORED_BYTES:
        raise fail("invalid_request", "The authorization request is too large")
    return client, params


async def read_id_token_hint(
    keys: KeyCache, issuer_id: str, iss: str, query: dict[str, list[str]], params: AuthorizeParams
) -> None:
    """Note whom ``id_token_hint`` names. An expired ID token still names its user (OIDC Core
    §3.1.2.1), so only the signature and issuer must hold; anything else is invalid_request."""
    try:
        hint = _one(query, "id_token_hint")
    except ValueError as exc:
        raise RedirectError(params.redirect_uri, params.state, "invalid_request", str(exc)) from exc
    if hint is None:
        return
    verified = tokens.verify(await keys.for_token(issuer_id, hint), hint, iss, allow_expired=True)
    sub = verified.claims.get("sub") if verified is not None and verified.is_id_token else None
    if not isinstance(sub, str) or not sub:
        raise RedirectError(
            params.redirect_uri,
            params.state,
            "invalid_request",
            "id_token_hint is not an ID token of this issuer",
        )
    params.hinted_sub = sub


def hint_matches(params: AuthorizeParams, user_id: str) -> bool:
    """Whether ``user_id`` is the user the request's id_token_hint names (true without a hint)."""
    return params.hinted_sub is None or params.hinted_sub == user_id


async def remember(session: AsyncSession, issuer: Issuer, params: AuthorizeParams) -> str:
    request_id = secrets.token_urlsafe(24)
    now = now_ms()
    session.add(
        AuthorizationRequest(
            id=request_id,
            issuer_id=issuer.id,
            client_id=params.client_id,
            params=params.as_dict(),
            created_at=now,
            expires_at=now + REQUEST_TTL_MS,
        )
    )
    await session.commit()
    return request_id


async def recall_pending(
    session: AsyncSession, issuer: Issuer, request_id: str | None
) -> AuthorizationRequest | None:
    """The pending request ``request_id`` of ``issuer``, with its sign-in progress, while it has not
    expired. One used after its expiry is recorded (``auth.flow.expired``) and forgotten, so it is
    recorded once."""
    if not request_id or len(request_id) > 64:
        return None
    row = await session.get(AuthorizationRequest, request_id)
    if row is None or row.issuer_id != issuer.id:
        return None
    if row.expires_at <= now_ms():
        await _expired(session, issuer, row)
        return None
    return row


async def save_params(session: AsyncSession, request_id: str, params: AuthorizeParams) -> None:
    await session.execute(
        update(AuthorizationRequest)
        .where(AuthorizationRequest.id == request_id)
        .values(params=params.as_dict())
    )


async def save_progress(session: AsyncSession, request_id: str, progress: dict[str, Any]) -> None:
    await session.execute(
        update(AuthorizationRequest).where(AuthorizationRequest.id == request_id).values(sign_in=progress)
    )


async def _expired(session: AsyncSession, issuer: Issuer, row: AuthorizationRequest) -> None:
    # The request ID is left out: it is the handle of the flow, in the URL of the sign-in page.
    if await forget(session, row.id):
        await events.emit(
            session,
            "auth.flow.expired",
            subject={"type": "issuer", "id": issuer.id},
            data={"client_id": row.client_id, "created_at": row.created_at, "expired_at": row.expires_at},
            account_id=issuer.account_id,
            issuer_id=issuer.id,
            client_id=row.client_id,
        )
    await session.commit()


async def forget(session: AsyncSession, request_id: str) -> bool:
    """Delete the pending request; False when it was already gone (another submission claimed it)."""
    result = await session.execute(delete(AuthorizationRequest).where(AuthorizationRequest.id == request_id))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def needs_login(params: AuthorizeParams, op: Session | None) -> bool:
    if op is None or "login" in params.prompt or not hint_matches(params, op.user_id):
        return True
    if params.max_age is None:
        return False
    # max_age=0 means prompt=login (OIDC Core §3.1.2.1), even for a sign-in within the same second.
    return params.max_age == 0 or now_s() - op.auth_time > params.max_age


async def needs_consent(session: AsyncSession, client: Client, user_id: str, params: AuthorizeParams) -> bool:
    if "consent" in params.prompt:
        return True
    if not openid(client).get("require_consent"):
        return False
    grant = await session.scalar(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client.id)
    )
    return grant is None or not set(params.scope) <= set(grant.scopes)


async def record_consent(
    session: AsyncSession, issuer: Issuer, user_id: str, client_id: str, scopes: list[str]
) -> None:
    """Add ``scopes`` to the user's grant for the client. The first grant is inserted with
    ``ON CONFLICT DO NOTHING`` and a later one merged under a row lock, so two consents given at
    once (two tabs) neither fail on the unique key nor lose each other's scopes. A grant that adds
    scopes is ``user.consent.granted``; consenting again to what was granted records nothing."""
    now = now_ms()
    table = Consent.__table__
    consent_id = secrets.token_hex(12)
    inserted = await session.execute(
        upsert(session, table)
        .values(
            id=consent_id,
            issuer_id=issuer.id,
            user_id=user_id,
            client_id=client_id,
            scopes=sorted(set(scopes)),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[table.c.user_id, table.c.client_id])
    )
    granted = sorted(set(scopes))
    if inserted.rowcount != 1:  # type: ignore[attr-defined]
        grant = await session.scalar(
            select(Consent)
            .where(Consent.user_id == user_id, Consent.client_id == client_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if grant is None:
            return
        granted = sorted(set(scopes) - set(grant.scopes))
        if not granted:
            return
        consent_id = grant.id
        grant.scopes = sorted(set(grant.scopes) | set(scopes))
        grant.updated_at = now
    await events.emit(
        session,
        "user.consent.granted",
        subject={"type": "user", "id": user_id},
        data={"consent_id": consent_id, "client_id": client_id, "scopes": granted},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user_id,
        client_id=client_id,
    )


async def issue_code(
    session: AsyncSession,
    issuer: Issuer,
    client: Client,
    op: Session,
    user: User,
    params: AuthorizeParams,
    code_ttl: int,
) -> str:
    """Create the rp session and a one-time code; returns the redirect URL carrying it."""
    rp = await session_service.create_rp_session(session, issuer, op, client.id)
    code = secrets.token_urlsafe(32)
    session.add(
        AuthorizationCode(
            code_digest=hashing.digest(code),
            issuer_id=issuer.id,
            client_id=client.id,
            user_id=user.id,
            rp_session_id=rp.id,
            redirect_uri=params.redirect_uri,
            scope=" ".join(params.scope),
            nonce=params.nonce,
            code_challenge=params.code_challenge,
            resources=params.resources,
            org_id=params.org,
            auth_time=op.auth_time,
            expires_at=now_ms() + code_ttl * 1000,
        )
    )
    session_service.touch(op)
    return code


def success_redirect(params: AuthorizeParams, code: str, iss: str) -> str:
    return redirect_uris.with_params(params.redirect_uri, {"code": code, "state": params.state, "iss": iss})


def error_redirect(redirect_uri: str, state: str | None, error: str, description: str, iss: str) -> str:
    return redirect_uris.with_params(
        redirect_uri, {"error": error, "error_description": description, "state": state, "iss": iss}
    )
