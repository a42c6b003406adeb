"""Per-request protocol context: the issuer named by the path, the calling client, and the issuer
URL that becomes ``iss``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from authpi.crypto import hashing
from authpi.oidc.errors import OAuthError, invalid_client, invalid_request
from authpi.runtime import Runtime
from authpi.storage import row_cache
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer

# No legitimate parameter or credential contains NUL, and PostgreSQL cannot store one: every decoded
# value the IdP API reads is refused with it (the dispatcher does the same for the URL; cookies are
# only ever hashed or compared with a MAC, so they never reach the database as text).
NUL = "\x00"
NUL_REFUSED = "Parameters must not contain NUL characters"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def issuer_url(rt: Runtime, issuer_id: str) -> str:
    return f"{rt.settings.public_url_base}/{issuer_id}"


async def _detached(session: AsyncSession, model: type[Issuer] | type[Client], key: str) -> Any | None:
    row: Any | None = await session.get(model, key)
    if row is not None:
        session.expunge(row)  # shared across requests: must not stay bound to this session
    return row


async def load_issuer(session: AsyncSession, issuer_id: str) -> Issuer:
    """The active issuer named by the path (cached for a few seconds; see storage.row_cache)."""
    issuer: Issuer | None = None
    if issuer_id.startswith("i_") and len(issuer_id) <= 64:
        issuer = await row_cache.rows.get_or_load(
            "issuer", issuer_id, lambda: _detached(session, Issuer, issuer_id)
        )
    if issuer is None or issuer.status != "active":
        raise OAuthError("not_found", "Unknown issuer", 404)
    return issuer


async def load_client(session: AsyncSession, issuer_id: str, client_id: str) -> Client | None:
    """The issuer's active client (cached like issuers; a Core API write evicts it at once)."""
    if not client_id or len(client_id) > 64:
        return None
    client: Client | None = await row_cache.rows.get_or_load(
        "client", client_id, lambda: _detached(session, Client, client_id)
    )
    if client is None or client.issuer_id != issuer_id or client.status != "active":
        return None
    return client


async def load_auth_methods(session: AsyncSession, issuer_id: str) -> list[AuthMethod]:
    """The issuer's auth methods, featured first, then in the order they were added (cached like
    clients; a Core API write evicts the list at once). Every step of a sign-in reads them, often
    more than once. The rows are shared across requests: read them, never change them."""

    async def load() -> list[AuthMethod]:
        rows = list(
            (
                await session.scalars(
                    select(AuthMethod)
                    .where(AuthMethod.issuer_id == issuer_id)
                    .order_by(AuthMethod.featured.desc(), AuthMethod.created_at, AuthMethod.id)
                )
            ).all()
        )
        for row in rows:
            session.expunge(row)  # shared across requests: must not stay bound to this session
        return rows

    methods = await row_cache.rows.get_or_load("auth_methods", issuer_id, load)
    return methods if methods is not None else []


async def auth_method(session: AsyncSession, issuer_id: str, method_type: str) -> AuthMethod | None:
    """The issuer's method of ``method_type`` (an issuer has at most one of each), from the cache."""
    return next((m for m in await load_auth_methods(session, issuer_id) if m.method == method_type), None)


PUBLIC_DOCUMENT_MAX_AGE = 30.0


async def ensure_issuer(rt: Runtime, issuer_id: str) -> None:
    """Existence check for discovery and JWKS, documents clients cache for an hour anyway: a row
    up to 30 s old will do, so a burst of requests never stampedes the database when it expires."""
    cached: Issuer | None = row_cache.rows.get("issuer", issuer_id, max_age=PUBLIC_DOCUMENT_MAX_AGE)
    if cached is not None and cached.status == "active":
        return
    async with rt.sessions() as session:
        await load_issuer(session, issuer_id)


def openid(client: Client) -> dict[str, Any]:
    settings: dict[str, Any] = client.settings.get("openid", {})
    return settings


def signing_alg(client: Client) -> str:
    return str(openid(client).get("response_signature_alg") or "ES256")


def ttl(issuer: Issuer, client: Client, name: str) -> int:
    """A token lifetime: the client's override, else the issuer's default (decision 11)."""
    override = openid(client).get(name)
    if isinstance(override, int) and override > 0:
        return override
    return int(issuer.settings["security"]["tokens"][name])


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    secret: str | None
    method: str  # client_secret_basic | client_secret_post | none


def client_credentials(request: Request, form: dict[str, list[str]]) -> ClientCredentials:
    """Read client authentication from Basic or the body, never both (RFC 6749 §2.3)."""
    header = request.headers.get("authorization", "")
    body_id = single(form, "client_id")
    body_secret = single(form, "client_secret")
    if header[:6].lower() == "basic ":
        if body_secret is not None:
            raise invalid_request("Use one client authentication method, not several")
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            raw_id, _, raw_secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise invalid_client("Malformed Basic credentials") from exc
        client_id, secret = unquote(raw_id), unquote(raw_secret)
        if NUL in client_id or NUL in secret:
            raise invalid_request(NUL_REFUSED)
        if body_id is not None and body_id != client_id:
            raise invalid_request("client_id does not match the authenticated client")
        return ClientCredentials(client_id, secret, "client_secret_basic")
    if not body_id:
        raise invalid_client("Client authentication is required")
    if body_secret is not None:
        return ClientCredentials(body_id, body_secret, "client_secret_post")
    return ClientCredentials(body_id, None, "none")


async def authenticate_client(
    session: AsyncSession, issuer_id: str, creds: ClientCredentials, *, allow_public: bool = True
) -> Client:
    client = await load_client(session, issuer_id, creds.client_id)
    if client is None:
        # Spend the same time as a real comparison so client IDs cannot be probed by timing.
        hashing.matches(creds.secret or "", hashing.digest("unknown-client"))
        raise invalid_client()
    if client.confidential:
        if creds.secret is None or client.secret_digest is None:
            raise invalid_client("This client must authenticate with its secret")
        if not hashing.matches(creds.secret, client.secret_digest):
            raise invalid_client()
    else:
        if creds.secret is not None:
            raise invalid_client("A public client has no secret")
        if not allow_public:
            raise invalid_client("Public clients cannot use this endpoint")
    return client


def single(form: dict[str, list[str]], name: str) -> str | None:
    """One value of a form parameter; repeating a single-valued parameter is invalid_request."""
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise invalid_request(f"The parameter {name} was sent more than once")
    return values[0]


def parse_form(raw: bytes | str, limit: int = 64 * 1024) -> dict[str, list[str]]:
    """Decode a urlencoded form or query; invalid_request for oversized, non-UTF-8 or NUL-bearing
    input (PostgreSQL cannot store NUL, and no legitimate parameter contains one)."""
    if len(raw) > limit:
        raise invalid_request("The request is too large")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        form = parse_qs(text, keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("The request is not valid form data") from exc
    for name, values in form.items():
        if NUL in name or any(NUL in value for value in values):
            raise invalid_request(NUL_REFUSED)
    return form


async def read_form(request: Request) -> dict[str, list[str]]:
    """Parse a form body by hand: faster than FastAPI's Form() and lets errors be OAuth-shaped."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise invalid_request("The body must be application/x-www-form-urlencoded")
    # The body is already within AUTHPI_MAX_FORM_BYTES (authpi.request_limits refuses larger ones).
    return parse_form(await request.body(), runtime(request).settings.max_form_bytes)
