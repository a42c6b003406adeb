"""Domains an organization claims for enterprise SSO (core-api rows 98-100): added with a TXT
record to publish, verified by looking that record up (dnspython; ``AUTHPI_DNS_NAMESERVERS`` picks
the servers, so tests use a local one), removed. A domain verified by one organization of an issuer
cannot be verified by another. The SSO sign-in itself (home-realm discovery, JIT) is not built."""

from __future__ import annotations

import re
import secrets
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.services import events
from authpi.services.errors import Conflict, InvalidInput, NotFound
from authpi.storage.tables.organizations import Organization, SsoDomain

RECORD_PREFIX = "_authpi-verification"
VALUE_PREFIX = "authpi-verification="
LOOKUP_TIMEOUT_S = 5.0
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize(raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidInput.on("domain", "invalid_type", "domain must be a string")
    try:
        domain = raw.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidInput.on("domain", "invalid_domain", "Not a valid domain name") from exc
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidInput.on("domain", "invalid_domain", "Not a valid domain name (e.g. acme.com)")
    return domain


def record_name(domain: str) -> str:
    return f"{RECORD_PREFIX}.{domain}"


def describe(row: SsoDomain) -> dict[str, Any]:
    return {
        "domain": row.domain,
        "txt_record_name": record_name(row.domain),
        "txt_record_value": row.txt_record_value,
        "verified": row.verified_at is not None,
        "verified_at": row.verified_at,
    }


async def _emit(session: AsyncSession, kind: str, row: SsoDomain) -> None:
    await events.emit_for(session, kind, row, "organization_sso_domain", issuer_id=row.issuer_id)


async def _find(session: AsyncSession, org_id: str, domain: str) -> SsoDomain | None:
    found: SsoDomain | None = await session.scalar(
        select(SsoDomain).where(SsoDomain.org_id == org_id, SsoDomain.domain == domain)
    )
    return found


async def add(session: AsyncSession, org: Organization, raw: Any) -> SsoDomain:
    """Claim ``raw`` for ``org`` (the same claim again answers the same record)."""
    domain = normalize(raw)
    existing = await _find(session, org.id, domain)
    if existing is not None:
        return existing
    row = SsoDomain(
        id=ids.sso_domain_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        domain=domain,
        txt_record_value=VALUE_PREFIX + secrets.token_urlsafe(24),
        created_at=now_ms(),
    )
    session.add(row)
    await session.flush()
    await _emit(session, "organization.sso.domain-created", row)
    return row


async def get(session: AsyncSession, org_id: str, raw: str) -> SsoDomain:
    try:
        domain = normalize(raw)
    except InvalidInput as exc:
        raise NotFound("SSO domain") from exc
    row = await _find(session, org_id, domain)
    if row is None:
        raise NotFound("SSO domain")
    return row


def resolver(nameservers: str | None) -> dns.asyncresolver.Resolver:
    """The system resolver, or the configured servers (``host`` or ``host:port``, comma-separated)."""
    if not nameservers:
        return dns.asyncresolver.Resolver()
    chosen = dns.asyncresolver.Resolver(configure=False)
    hosts, ports = [], set()
    for entry in (part.strip() for part in nameservers.split(",") if part.strip()):
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        hosts.append(host or entry)
        if port:
            ports.add(int(port))
    chosen.nameservers = hosts
    if ports:
        chosen.port = ports.pop()
    return chosen


async def published_values(lookup: dns.asyncresolver.Resolver, name: str) -> tuple[list[str], str | None]:
    """The TXT strings at ``name`` and, when the lookup failed, why (outside any transaction)."""
    try:
        answer = await lookup.resolve(name, "TXT", lifetime=LOOKUP_TIMEOUT_S)
    except dns.resolver.NXDOMAIN:
        return [], f"{name} does not exist"
    except dns.resolver.NoAnswer:
        return [], f"{name} has no TXT record"
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return [], f"The DNS lookup of {name} failed: {type(exc).__name__}"
    values = [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
    return values, None


async def mark_verified(session: AsyncSession, row: SsoDomain) -> None:
    taken = await session.scalar(
        select(SsoDomain.org_id).where(
            SsoDomain.issuer_id == row.issuer_id,
            SsoDomain.domain == row.domain,
            SsoDomain.org_id != row.org_id,
            SsoDomain.verified_at.is_not(None),
        )
    )
    if taken:
        raise Conflict(f"{row.domain} is already verified by another organization of this issuer")
    if row.verified_at is None:
        row.verified_at = now_ms()
        await session.flush()
        await _emit(session, "organization.sso.domain-verified", row)


async def remove(session: AsyncSession, org_id: str, raw: str) -> str:
    row = await get(session, org_id, raw)
    await _emit(session, "organization.sso.domain-deleted", row)
    await session.delete(row)
    await session.flush()
    return row.domain
