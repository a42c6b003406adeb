"""Clients: OAuth 2.0 / OpenID Connect applications of an issuer (decision 27).

A client has a ``type`` (web, spa, native, m2m) that sets its defaults, is confidential (it holds a
secret, stored only as a SHA-256 digest and shown once) or public (never a secret), and keeps its
protocol configuration in ``settings.openid``, which is validated and stored back normalised, every
default filled in, so what GET shows is exactly what the OpenID provider enforces.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.services import events, sessions, versions
from authpi.services.errors import Conflict, FieldProblem, InvalidInput, NotFound
from authpi.storage import invalidation
from authpi.storage.tables.clients import Client

TYPES = ("web", "spa", "native", "m2m")
APPLICATION_TYPES = ("web", "native")
STATUSES = ("active", "disabled", "deleted")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SIGNING_ALGS = ("ES256", "EdDSA", "RS256")
ORGANIZATION_MODES = ("all", "none", "allowlist")
TTL_KEYS = ("access_token_ttl", "id_token_ttl", "refresh_token_ttl")
TTL_RANGE = (60, 21 * 86400)
MAX_URIS = 100
MAX_URI_LENGTH = 2000
PROTOCOL = "openid"
SECRET_PREFIX = "cs_"
OPENID_KEYS = (
    "application_type",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "response_signature_alg",
    *TTL_KEYS,
    "require_consent",
    "organizations",
    "allowed_resources",
    "allowed_origins",
)
BROWSER_TYPES = ("spa", "native")  # their redirect URIs' origins may call the token endpoint (CORS)
# Schemes a native app may not claim as its private-use redirect scheme.
_RESERVED_SCHEMES = {"javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws", "wss"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DUMMY_DIGEST = hashing.digest("authpi-no-client-secret")


@dataclass(frozen=True)
class NewClient:
    client: Client
    secret: str | None


def default_confidential(client_type: str) -> bool:
    return client_type in ("web", "m2m")


def default_grant_types(client_type: str) -> list[str]:
    return ["client_credentials"] if client_type == "m2m" else ["authorization_code", "refresh_token"]


def openid(client: Client) -> dict[str, Any]:
    """The normalised ``settings.openid`` block of a stored client."""
    block: dict[str, Any] = client.settings.get("openid") or {}
    return block


def authenticate_secret(client: Client, presented_secret: str) -> bool:
    """Constant-time check of a presented client secret; always false for a public client.

    Only the secret is checked: the caller decides what a disabled client may do.
    """
    has_secret = client.confidential and client.secret_digest is not None
    stored = client.secret_digest if has_secret and client.secret_digest else _DUMMY_DIGEST
    return hashing.matches(presented_secret, stored) and has_secret


def scope_names(field: str, scopes: list[Any] | None) -> list[str]:
    """A de-duplicated list of scope names: non-empty strings without whitespace, ≤ 200 characters."""
    values = list(dict.fromkeys(scopes or []))
    for scope in values:
        if not isinstance(scope, str) or not scope or len(scope) > 200 or any(c.isspace() for c in scope):
            raise InvalidInput.on(field, "invalid_scope", f"'{scope}' is not a valid scope name")
    return values


# --- redirect URIs -----------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _uri_problem(field: str, uri: Any, application_type: str) -> FieldProblem | None:
    """Why ``uri`` cannot be registered as a (post-logout) redirect URI, or None (decision 15)."""

    def bad(code: str, message: str) -> FieldProblem:
        return FieldProblem(field, code, message)

    if not isinstance(uri, str) or not uri:
        return bad("invalid_type", "Redirect URIs must be non-empty strings")
    if len(uri) > MAX_URI_LENGTH:
        return bad("too_long", f"Redirect URIs are at most {MAX_URI_LENGTH} characters")
    if "*" in uri:
        return bad("wildcard", f"Wildcards are not allowed in redirect URIs: {uri}")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in uri):
        return bad("invalid_uri", f"Redirect URIs cannot contain whitespace: {uri!r}")
    if "#" in uri:
        return bad("fragment", f"Redirect URIs cannot contain a fragment: {uri}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError:
        return bad("invalid_uri", f"Not a valid URI: {uri}")
    scheme = parts.scheme.lower()
    if not scheme or not _SCHEME.match(parts.scheme):
        return bad("invalid_uri", f"Redirect URIs must be absolute: {uri}")
    if scheme in ("http", "https"):
        if not parts.hostname:
            return bad("invalid_uri", f"Redirect URIs must name a host: {uri}")
        if parts.username is not None or parts.password is not None:
            return bad("invalid_uri", f"Redirect URIs cannot carry credentials: {uri}")
        if scheme == "http" and not _is_loopback(parts.hostname):
            return bad("insecure_uri", f"Redirect URIs must use https (http only for localhost): {uri}")
        return None
    if application_type != "native":
        return bad("insecure_uri", f"Web clients must use https redirect URIs: {uri}")
    if scheme in _RESERVED_SCHEMES or "." not in scheme:
        # RFC 8252 §7.1: a private-use scheme is a reverse domain name the app controls.
        return bad(
            "invalid_scheme",
            f"A native app's private-use scheme must be a reverse domain name (com.example.app:/cb): {uri}",
        )
    if not parts.path and not parts.netloc:
        return bad("invalid_uri", f"Redirect URIs need a path after the scheme: {uri}")
    return None


def _uri_list(field: str, value: Any, application_type: str, problems: list[FieldProblem]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(FieldProblem(field, "invalid_type", f"{field} must be a list of URIs"))
        return []
    if len(value) > MAX_URIS:
        problems.append(FieldProblem(field, "too_many", f"{field} holds at most {MAX_URIS} URIs"))
        return []
    found = [_uri_problem(field, uri, application_type) for uri in value]
    problems.extend(p for p in found if p is not None)
    return list(dict.fromkeys(str(uri) for uri in value))


# --- resources and browser origins (decision 34) ------------------------------------------------


def _resource_problem(field: str, uri: Any) -> FieldProblem | None:
    """Why ``uri`` cannot be a resource indicator (RFC 8707 §2), or None. IDs such as another
    client's never qualify: they are not absolute URIs, and an ``aud`` must never name a client."""

    def bad(code: str, message: str) -> FieldProblem:
        return FieldProblem(field, code, message)

    if not isinstance(uri, str) or not uri:
        return bad("invalid_type", "Resources must be non-empty strings")
    if len(uri) > MAX_URI_LENGTH:
        return bad("too_long", f"Resources are at most {MAX_URI_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in uri):
        return bad("invalid_uri", f"Resources cannot contain whitespace: {uri!r}")
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.match(scheme) or not rest:
        return bad(
            "invalid_uri", f"A resource is an absolute URI such as https://api.example.com/, not an ID: {uri}"
        )
    if "#" in uri:
        return bad("fragment", f"Resources cannot contain a fragment: {uri}")
    if "*" in uri:
        return bad("wildcard", f"Wildcards are not allowed in resources: {uri}")
    return None


def origin_of(uri: str) -> str | None:
    """The browser origin (``scheme://host[:port]``, default port left out) of an http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def _origin_problem(field: str, value: Any) -> FieldProblem | None:
    def bad(code: str, message: str) -> FieldProblem:
        return FieldProblem(field, code, message)

    if not isinstance(value, str) or not value:
        return bad("invalid_type", "Origins must be non-empty strings")
    if len(value) > 300 or "*" in value:
        return bad("invalid_origin", f"Origins are scheme://host[:port], without wildcards: {value}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError:
        return bad("invalid_origin", f"Not a valid origin: {value}")
    if (
        parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or parts.username is not None
        or parts.password is not None
        or any(ch.isspace() for ch in value)
    ):
        return bad("invalid_origin", f"Origins are scheme://host[:port], nothing more: {value}")
    if parts.scheme.lower() == "http" and not _is_loopback(parts.hostname):
        return bad("insecure_uri", f"Origins must use https (http only for localhost): {value}")
    return None


def _checked_list(
    field: str,
    value: Any,
    problem: Callable[[str, Any], FieldProblem | None],
    problems: list[FieldProblem],
    normalise: Callable[[str], str] = str,
) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(FieldProblem(field, "invalid_type", f"{field} must be a list"))
        return []
    if len(value) > MAX_URIS:
        problems.append(FieldProblem(field, "too_many", f"{field} holds at most {MAX_URIS} entries"))
        return []
    found = [problem(field, item) for item in value]
    problems.extend(p for p in found if p is not None)
    if any(found):
        return []
    return list(dict.fromkeys(normalise(item) for item in value))


def browser_origins(client_type: str, openid_settings: dict[str, Any]) -> set[str]:
    """The origins a client's browser code may call the provider from (decisions 28 and 34): its
    registered ``allowed_origins``, plus its redirect URIs' origins for SPAs and native apps."""
    origins = set(openid_settings.get("allowed_origins") or [])
    if client_type in BROWSER_TYPES:
        found = (origin_of(uri) for uri in openid_settings.get("redirect_uris") or [])
        origins.update(o for o in found if o)
    return origins


async def issuer_browser_origins(session: AsyncSession, issuer_id: str) -> frozenset[str]:
    """Every browser origin of the issuer's active clients, in one query."""
    rows = await session.execute(
        select(Client.type, Client.settings).where(Client.issuer_id == issuer_id, Client.status == "active")
    )
    origins: set[str] = set()
    for client_type, settings in rows:
        origins |= browser_origins(client_type, (settings or {}).get(PROTOCOL) or {})
    return frozenset(origins)


async def _forget_cached(session: AsyncSession, client: Client) -> None:
    """Once the write commits, evict what protocol requests cache about this client, everywhere."""
    await invalidation.evict_everywhere(session, "client", client.id)
    await invalidation.evict_everywhere(session, "origins", client.issuer_id)


# A client is "blocked" while disabled; any other change is ``client.updated``.
_STATUS_EVENTS = {("active", "disabled"): "client.blocked", ("disabled", "active"): "client.unblocked"}


async def _emit(session: AsyncSession, kind: str, client: Client) -> None:
    await events.emit_for(session, kind, client, "client", issuer_id=client.issuer_id, client_id=client.id)


async def _saved(session: AsyncSession, client: Client) -> None:
    """Flush a change to ``client``; the cached copies go once the transaction commits."""
    await session.flush()
    await _forget_cached(session, client)


# --- settings ----------------------------------------------------------------------------------


def _grant_types(
    field: str, value: Any, client_type: str, confidential: bool, problems: list[FieldProblem]
) -> list[str]:
    if value is None:
        return default_grant_types(client_type)
    if not isinstance(value, list) or not value or not all(isinstance(g, str) for g in value):
        problems.append(FieldProblem(field, "invalid_type", f"{field} must be a non-empty list of strings"))
        return []
    grants = list(dict.fromkeys(value))
    unknown = [g for g in grants if g not in GRANT_TYPES]
    if unknown:
        problems.append(
            FieldProblem(field, "invalid_choice", f"Unsupported grant types {unknown}; use {GRANT_TYPES}")
        )
    if "client_credentials" in grants and not confidential:
        problems.append(
            FieldProblem(field, "invalid_value", "client_credentials is only for confidential clients")
        )
    if "refresh_token" in grants and "authorization_code" not in grants:
        problems.append(FieldProblem(field, "invalid_value", "refresh_token requires authorization_code"))
    return grants


def _organizations(field: str, value: Any, problems: list[FieldProblem]) -> dict[str, Any]:
    if value is None:
        return {"mode": "all", "allowlist": [], "required": False}
    if not isinstance(value, dict):
        problems.append(FieldProblem(field, "invalid_type", f"{field} must be an object"))
        return {}
    mode = value.get("mode", "all")
    allowlist = value.get("allowlist") or []
    if mode not in ORGANIZATION_MODES:
        problems.append(
            FieldProblem(f"{field}.mode", "invalid_choice", f"mode must be one of {ORGANIZATION_MODES}")
        )
    if not isinstance(allowlist, list) or not all(isinstance(v, str) and v for v in allowlist):
        problems.append(
            FieldProblem(f"{field}.allowlist", "invalid_type", "allowlist must be a list of organization IDs")
        )
        allowlist = []
    required = value.get("required", False)
    if not isinstance(required, bool):
        problems.append(FieldProblem(f"{field}.required", "invalid_type", "required must be a boolean"))
    extra = sorted(set(value) - {"mode", "allowlist", "required"})
    problems.extend(FieldProblem(f"{field}.{k}", "unknown_field", f"Unknown field {k}") for k in extra)
    # required: every token set has a selected organization (the hosted picker asks which).
    return {"mode": mode, "allowlist": list(dict.fromkeys(allowlist)), "required": required is True}


def _openid(
    client_type: str, confidential: bool, given: dict[str, Any], problems: list[FieldProblem]
) -> dict[str, Any]:
    """Validate ``settings.openid`` and fill every default. A null value means "the default"."""
    p = "settings.openid."
    for key in sorted(set(given) - set(OPENID_KEYS)):
        problems.append(FieldProblem(p + key, "unknown_field", f"Unknown OpenID setting {key}"))
    derived = "native" if client_type == "native" else "web"
    app_type = given.get("application_type") or derived
    if app_type not in APPLICATION_TYPES:
        problems.append(
            FieldProblem(p + "application_type", "invalid_choice", "application_type must be web or native")
        )
        app_type = derived
    redirect_uris = _uri_list(p + "redirect_uris", given.get("redirect_uris"), app_type, problems)
    post_logout = _uri_list(
        p + "post_logout_redirect_uris", given.get("post_logout_redirect_uris"), app_type, problems
    )
    grants = _grant_types(p + "grant_types", given.get("grant_types"), client_type, confidential, problems)
    if "authorization_code" in grants and not redirect_uris:
        problems.append(
            FieldProblem(
                p + "redirect_uris", "required", "A client using authorization_code needs a redirect URI"
            )
        )
    alg = given.get("response_signature_alg") or "ES256"
    if alg not in SIGNING_ALGS:
        problems.append(
            FieldProblem(
                p + "response_signature_alg",
                "invalid_choice",
                f"response_signature_alg: one of {SIGNING_ALGS}",
            )
        )
    ttls: dict[str, int | None] = {}
    low, high = TTL_RANGE
    for key in TTL_KEYS:
        value = given.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high
        ):
            problems.append(
                FieldProblem(
                    p + key, "out_of_range", f"{key} must be an integer from {low} to {high} seconds"
                )
            )
        ttls[key] = value
    consent = given.get("require_consent")
    if consent is not None and not isinstance(consent, bool):
        problems.append(
            FieldProblem(p + "require_consent", "invalid_type", "require_consent must be a boolean")
        )
    return {
        "application_type": app_type,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout,
        "grant_types": grants,
        "response_signature_alg": alg,
        **ttls,
        "require_consent": bool(consent),
        "organizations": _organizations(p + "organizations", given.get("organizations"), problems),
        "allowed_resources": _checked_list(
            p + "allowed_resources", given.get("allowed_resources"), _resource_problem, problems
        ),
        "allowed_origins": _checked_list(
            p + "allowed_origins",
            given.get("allowed_origins"),
            _origin_problem,
            problems,
            lambda value: origin_of(value) or value,
        ),
    }


def build_settings(
    client_type: str,
    confidential: bool,
    patch: dict[str, Any] | None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The client's settings: ``current`` with ``patch`` applied, validated and normalised.

    Keys of ``settings.openid`` replace the current ones one by one; other top-level settings
    sections are kept as sent (free-form).
    """
    patch = patch or {}
    current = current or {}
    given = patch.get("openid")
    if given is not None and not isinstance(given, dict):
        raise InvalidInput.on("settings.openid", "invalid_type", "settings.openid must be an object")
    merged = {**current, **{k: v for k, v in patch.items() if k != PROTOCOL}}
    problems: list[FieldProblem] = []
    merged[PROTOCOL] = _openid(
        client_type, confidential, {**(current.get(PROTOCOL) or {}), **(given or {})}, problems
    )
    if problems:
        raise InvalidInput(problems[0].message, fields=problems)
    return merged


def _check_logo_url(value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput.on("logo_url", "invalid_url", "logo_url must be an absolute http(s) URL")


def _new_secret(client: Client) -> str:
    plain = hashing.new_secret(SECRET_PREFIX)
    client.secret_digest = hashing.digest(plain)
    return plain


# --- operations --------------------------------------------------------------------------------


async def create_client(session: AsyncSession, issuer_id: str, body: dict[str, Any]) -> NewClient:
    client_type = body.get("type") or "web"
    confidential = body.get("confidential")
    if confidential is None:
        confidential = default_confidential(client_type)
    if client_type == "m2m" and not confidential:
        raise InvalidInput.on("confidential", "invalid_value", "An m2m client must be confidential")
    _check_logo_url(body.get("logo_url"))
    scopes = scope_names("scopes", body.get("scopes"))
    settings = build_settings(client_type, confidential, body.get("settings"))
    now = now_ms()
    client = Client(
        id=ids.client_id(),
        issuer_id=issuer_id,
        name=body["name"],
        description=body.get("description"),
        logo_url=body.get("logo_url"),
        type=client_type,
        application_type=settings[PROTOCOL]["application_type"],
        confidential=confidential,
        status=body.get("status") or "active",
        status_at=now,
        scopes=scopes,
        settings=settings,
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    secret = _new_secret(client) if confidential else None
    session.add(client)
    await _saved(session, client)
    await _emit(session, "client.created", client)
    return NewClient(client, secret)


def list_statement(
    issuer_id: str,
    *,
    q: str | None = None,
    name: str | None = None,
    status: str | None = None,
    application_type: str | None = None,
) -> Select[Any]:
    stmt = select(Client).where(Client.issuer_id == issuer_id)
    stmt = stmt.where(Client.status == status) if status else stmt.where(Client.status != "deleted")
    if q:
        stmt = stmt.where(or_(Client.name.ilike(f"%{q}%"), Client.id == q))
    if name:
        stmt = stmt.where(Client.name.ilike(f"%{name}%"))
    if application_type in APPLICATION_TYPES:
        stmt = stmt.where(Client.application_type == application_type)
    elif application_type in TYPES:
        stmt = stmt.where(Client.type == application_type)
    elif application_type:
        stmt = stmt.where(false())
    return stmt


async def get_client(
    session: AsyncSession, issuer_id: str, client_id: str, *, for_update: bool = False
) -> Client:
    stmt = select(Client).where(
        Client.id == client_id, Client.issuer_id == issuer_id, Client.status != "deleted"
    )
    if for_update:
        stmt = versions.for_update(stmt)
    client = await session.scalar(stmt)
    if client is None:
        raise NotFound("Client")
    return client


async def update_client(
    session: AsyncSession, issuer_id: str, client_id: str, changes: dict[str, Any], if_match: str | None
) -> Client:
    client = await get_client(session, issuer_id, client_id, for_update=True)
    await versions.claim(session, client, "Client", if_match)
    status_before = client.status
    problems = [
        FieldProblem(field, "immutable", f"{field} cannot change; create a new client")
        for field in ("type", "confidential")
        if changes.get(field) is not None and changes[field] != getattr(client, field)
    ]
    if problems:
        raise InvalidInput(problems[0].message, fields=problems)
    if "name" in changes and changes["name"] is not None:
        client.name = changes["name"]
    if "description" in changes:
        client.description = changes["description"]
    if "logo_url" in changes:
        _check_logo_url(changes["logo_url"])
        client.logo_url = changes["logo_url"]
    if "scopes" in changes:
        client.scopes = scope_names("scopes", changes["scopes"])
    if changes.get("settings") is not None:
        client.settings = build_settings(
            client.type, client.confidential, changes["settings"], client.settings
        )
        client.application_type = client.settings[PROTOCOL]["application_type"]
    if "metadata" in changes:
        client.metadata_ = changes["metadata"] or {}
    if changes.get("status") and changes["status"] != client.status:
        client.status = changes["status"]
        client.status_at = now_ms()
        if client.status != "active":
            # Re-enabling a client must not revive the tokens it had (it may have been disabled
            # because they leaked); its access tokens are refused while it is not active anyway.
            await sessions.revoke_all(
                session, issuer_id, client_id=client.id, reason=f"client_{client.status}"
            )
    await _saved(session, client)
    await _emit(session, _STATUS_EVENTS.get((status_before, client.status), "client.updated"), client)
    return client


async def delete_client(session: AsyncSession, issuer_id: str, client_id: str, if_match: str | None) -> None:
    """Soft delete; the client's sessions (and so its refresh tokens) are revoked."""
    client = await get_client(session, issuer_id, client_id, for_update=True)
    await versions.claim(session, client, "Client", if_match)
    now = now_ms()
    client.status = "deleted"
    client.status_at = now
    client.deleted_at = now
    await sessions.revoke_all(session, issuer_id, client_id=client.id, reason="client_deleted")
    await _saved(session, client)
    await _emit(session, "client.deleted", client)


async def rotate_secret(
    session: AsyncSession, issuer_id: str, client_id: str, if_match: str | None
) -> tuple[Client, str]:
    """A new secret replaces the old one at once (no overlap window)."""
    client = await get_client(session, issuer_id, client_id, for_update=True)
    await versions.claim(session, client, "Client", if_match)
    if not client.confidential:
        raise Conflict("A public client has no secret to rotate")
    plain = _new_secret(client)
    client.secret_rotated_at = now_ms()
    await _saved(session, client)
    await _emit(session, "client.secret.rotated", client)
    return client, plain
