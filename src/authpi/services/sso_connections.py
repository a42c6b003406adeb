"""An organization's SSO connection (``Organization.sso``, issue 13 item 6): the organization's own
OpenID provider, to which AuthPI sends the users of its verified domains (home-realm discovery).

The ``sso`` block of an organization PATCH is merged into the stored one (a ``null`` member removes
it): ``enabled``, ``sso_only``, ``issuer_url`` (OIDC discovery), ``client_id``, ``client_secret``
(write-only) and ``scopes``. The client secret is sealed with the master key into its own column
and never stored in ``sso``, so no copy of the block (GET, events, webhooks) can carry it; the
block reads back with ``client_secret_set`` and the ``redirect_uri`` to register at the provider.

``rotate-secret`` makes a new random secret, keeps it sealed and answers it once: the
organization's IT registers AuthPI at their provider with it (Keycloak, Okta, Auth0 and Entra ID
accept a secret that is given to them), so the secret is never pasted back through AuthPI.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.crypto.secretbox import SecretBox
from authpi.services import events, versions
from authpi.services.errors import InvalidInput
from authpi.storage.tables.organizations import Organization, SsoDomain

FIELDS = ("enabled", "sso_only", "issuer_url", "client_id", "client_secret", "scopes")
MAX_SCOPES = 50
SECRET_BYTES = 32


def redirect_uri(public_url_base: str, issuer_id: str, org_id: str) -> str:
    """The callback the organization's provider must allow: one per organization, so an answer
    meant for one connection is never taken for another's (the path is checked on the way back)."""
    return f"{public_url_base}/{issuer_id}/sso/{org_id}/callback"


def _seal_context(org_id: str) -> str:
    return f"organization_sso:{org_id}"


def client_secret(box: SecretBox, org: Organization) -> str:
    if not org.sso_secret_sealed:
        return ""
    return str(box.open_json(org.sso_secret_sealed, _seal_context(org.id)).get("client_secret") or "")


def _seal(box: SecretBox, org: Organization, secret: str | None) -> None:
    org.sso_secret_sealed = (
        box.seal_json({"client_secret": secret}, _seal_context(org.id)) if secret else None
    )


def _invalid(field: str, code: str, message: str) -> InvalidInput:
    return InvalidInput.on(f"sso.{field}", code, message)


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(field, "invalid_type", f"{field} must be a non-empty string")
    if len(value) > limit:
        raise _invalid(field, "too_long", f"{field} is at most {limit} characters")
    return value.strip()


def _issuer_url(value: Any) -> str:
    url = _text(value, "issuer_url", 2000)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise _invalid(
            "issuer_url",
            "invalid_url",
            "issuer_url must be the provider's http(s) issuer URL, without query or fragment",
        )
    return url


def _scopes(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _invalid("scopes", "invalid_type", "scopes must be a list of strings")
    if len(value) > MAX_SCOPES:
        raise _invalid("scopes", "too_many", f"At most {MAX_SCOPES} scopes")
    for scope in value:
        if not scope or len(scope) > 200 or any(c.isspace() or c in '"\\' for c in scope):
            raise _invalid("scopes", "invalid_scope", f"Not a scope: {scope!r}"[:250])
    return list(dict.fromkeys(value))


def merged(box: SecretBox, org: Organization, raw: Any) -> dict[str, Any] | None:
    """Apply the ``sso`` block of a PATCH (or a create) to ``org``: its public settings merged into
    the stored ones, its ``client_secret`` sealed. ``None`` removes the connection. Raises
    ``InvalidInput`` (422 with ``fields``) for anything the connection cannot use."""
    if raw is None:
        _seal(box, org, None)
        return None
    if not isinstance(raw, dict):
        raise InvalidInput.on("sso", "invalid_type", "sso must be an object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise _invalid(unknown[0], "unknown_field", f"Unknown SSO setting {unknown[0]}"[:250])
    current = dict(org.sso or {})
    for field in ("enabled", "sso_only"):
        if field in raw:
            if raw[field] is None:
                current.pop(field, None)
            elif not isinstance(raw[field], bool):
                raise _invalid(field, "invalid_type", f"{field} must be a boolean")
            else:
                current[field] = raw[field]
    readers = {
        "issuer_url": _issuer_url,
        "client_id": lambda v: _text(v, "client_id", 255),
        "scopes": _scopes,
    }
    for field, read in readers.items():
        if field in raw:
            if raw[field] is None:
                current.pop(field, None)
            else:
                current[field] = read(raw[field])
    if "client_secret" in raw:
        secret = raw["client_secret"]
        _seal(box, org, None if secret is None else _text(secret, "client_secret", 1000))
    if current.get("sso_only") is True and current.get("enabled") is not True:
        raise _invalid("sso_only", "requires_enabled", "sso_only needs the connection enabled")
    if current.get("enabled") is True:
        for field in ("issuer_url", "client_id"):
            if field not in current:
                raise _invalid(field, "required", f"An enabled SSO connection needs {field}")
        if not org.sso_secret_sealed:
            raise _invalid(
                "client_secret",
                "required",
                "An enabled SSO connection needs client_secret (or rotate-secret first)",
            )
    return current


def ready(org: Organization) -> bool:
    """Whether ``org``'s connection is on and has what a sign-in needs (a block stored before the
    connection was validated may lack it: such an organization is skipped, never a 500)."""
    sso = org.sso or {}
    complete = isinstance(sso.get("issuer_url"), str) and isinstance(sso.get("client_id"), str)
    return org.sso_enabled and complete and bool(org.sso_secret_sealed)


def describe(org: Organization, public_url_base: str) -> dict[str, Any] | None:
    """The ``sso`` block as the API shows it: the settings, whether a client secret is set (never
    the secret) and the redirect URI to register at the organization's provider."""
    if org.sso is None and not org.sso_secret_sealed:
        return None
    return {
        **(org.sso or {}),
        "client_secret_set": bool(org.sso_secret_sealed),
        "redirect_uri": redirect_uri(public_url_base, org.issuer_id, org.id),
    }


def _public(sso: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (sso or {}).items() if key != "client_secret"}


async def emit_changes(
    session: AsyncSession,
    org: Organization,
    before: dict[str, Any] | None,
    secret_before: str | None,
) -> None:
    """``organization.sso.enabled|disabled|updated`` for a change of the connection (none when
    nothing changed). The data is the public settings: the secret never leaves its column."""
    was, now = (before or {}).get("enabled") is True, (org.sso or {}).get("enabled") is True
    if was != now:
        kind = "organization.sso.enabled" if now else "organization.sso.disabled"
    elif before != org.sso or secret_before != org.sso_secret_sealed:
        kind = "organization.sso.updated"
    else:
        return
    await _emit(session, kind, org, secret_changed=secret_before != org.sso_secret_sealed)


async def _emit(session: AsyncSession, kind: str, org: Organization, **extra: Any) -> None:
    await events.emit(
        session,
        kind,
        subject={"type": "organization", "id": org.id},
        data={"org_id": org.id, "sso": _public(org.sso), **extra},
        issuer_id=org.issuer_id,
    )


async def rotate_secret(
    session: AsyncSession, box: SecretBox, org: Organization, if_match: str | None
) -> str:
    """A new random client secret for the connection, sealed; the caller answers it once."""
    await versions.claim(session, org, "Organization", if_match)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    _seal(box, org, secret)
    await session.flush()
    await _emit(session, "organization.sso.updated", org, secret_changed=True)
    return secret


def domain_of(email: str) -> str | None:
    """The domain part of an email address, lowercased (None when it is not one)."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain or len(domain) > 253:
        return None
    return domain.lower().rstrip(".")


async def for_email(
    session: AsyncSession, issuer_id: str, email: str, *, sso_only: bool = False
) -> Organization | None:
    """The active organization of ``issuer_id`` with an enabled SSO connection (with ``sso_only``:
    one that refuses other methods) that verified the domain of ``email`` (one verified owner per
    issuer and domain), if any."""
    domain = domain_of(email)
    if domain is None:
        return None
    wanted = Organization.sso_only.is_(True) if sso_only else Organization.sso_enabled.is_(True)
    org: Organization | None = await session.scalar(
        select(Organization)
        .join(SsoDomain, SsoDomain.org_id == Organization.id)
        .where(
            SsoDomain.issuer_id == issuer_id,
            SsoDomain.domain == domain,
            SsoDomain.verified_at.is_not(None),
            Organization.issuer_id == issuer_id,
            Organization.status == "active",
            wanted,
        )
        .limit(1)
    )
    return org if org is not None and ready(org) else None


async def verified_domain(session: AsyncSession, org: Organization, email: str | None) -> bool:
    """Whether ``email``'s domain is one ``org`` verified."""
    domain = domain_of(email or "")
    if domain is None:
        return False
    found = await session.scalar(
        select(SsoDomain.domain).where(
            SsoDomain.org_id == org.id, SsoDomain.domain == domain, SsoDomain.verified_at.is_not(None)
        )
    )
    return found is not None
