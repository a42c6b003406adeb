"""The guard every Core API route depends on: authenticate → isolate → authorise → rate-limit →
claim the Idempotency-Key. Written once; routes only name the scope they need.

A request uses one database session (one pooled connection at a time) from the guard to its
response; ``http.unit_of_work`` commits it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Depends, Request, Security
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.security.base import SecurityBase
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.runtime import Runtime
from authpi.services import api_keys, events, idempotency
from authpi.services.errors import Forbidden, NotFound, Unauthorized
from authpi.services.principal import Principal


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session (FastAPI hands every dependency of one request the same one)."""
    async with runtime(request).sessions() as session:
        request.state.db_session = session
        yield session


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class _ApiKeyScheme(SecurityBase):
    """Declares in the OpenAPI document that a route takes an API key as HTTP Basic credentials (so
    ``/docs`` offers an Authorize button). It reads nothing: ``authenticate`` checks the header, with
    the error envelope and messages of this API."""

    def __init__(self) -> None:
        self.model = HTTPBaseModel(
            scheme="basic", description="An API key: `key_id` as the user name, `key_secret` as the password."
        )
        self.scheme_name = "apiKey"

    async def __call__(self) -> None:
        return None


API_KEY = _ApiKeyScheme()


def _basic_credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Authentication is required: send an API key as HTTP Basic credentials")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("Unsupported authorization scheme; use HTTP Basic with an API key")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("Malformed Basic credentials") from exc
    key_id, sep, secret = decoded.partition(":")
    if not sep or not key_id or not secret or "\x00" in decoded:
        raise Unauthorized("Malformed Basic credentials")
    return key_id, secret


class IdempotentReplay(Exception):
    def __init__(self, stored: idempotency.StoredResponse) -> None:
        self.stored = stored


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    rt = runtime(request)
    await rt.rate_limits.hit("core", client_ip(request))
    key_id, secret = _basic_credentials(request)
    return await api_keys.authenticate(session, key_id, secret, client_ip(request))


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the caller must hold ``scope`` (None: any authenticated caller)."""

    async def guard(
        request: Request, session: AsyncSession = Depends(db_session), _: None = Security(API_KEY)
    ) -> Principal:
        principal = await authenticate(request, session)
        events.act_as(_actor(request, principal))
        path_account = request.path_params.get("account_id")
        if path_account is not None and path_account != principal.account_id:
            # Another account's resources do not exist for this caller (decision 7).
            raise NotFound("Account")
        if scope is not None and not principal.allows(scope):
            raise Forbidden(f"This API key lacks the scope {scope}")
        await _claim_idempotency_key(request, session, principal)
        return principal

    return guard


def _actor(request: Request, principal: Principal) -> events.Actor:
    auth = {
        "type": "api_key",
        "key_id": principal.key_id,
        "ip": client_ip(request),
        "user_agent": request.headers.get("user-agent"),
    }
    return events.Actor(trigger="api", source="core-api", account_id=principal.account_id, auth=auth)


async def _claim_idempotency_key(request: Request, session: AsyncSession, principal: Principal) -> None:
    key = request.headers.get("idempotency-key")
    if key is None or request.method not in ("POST", "PATCH"):
        return
    idempotency.validate_key(key)
    body = await request.body()
    slot = idempotency.Slot(
        account_id=principal.account_id,
        principal_id=principal.key_id,
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.url.path, body),
        authority=idempotency.authority_of(principal),
    )
    claimed = await idempotency.begin(session, runtime(request).secretbox, slot)
    if isinstance(claimed, idempotency.StoredResponse):
        raise IdempotentReplay(claimed)
    request.state.idempotency = claimed


__all__ = ["IdempotentReplay", "Principal", "Unauthorized", "require"]
