"""Account API keys: Basic-auth credentials with scopes, hashed secrets and a status lifecycle."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.services import events, versions
from authpi.services import scopes as scope_rules
from authpi.services.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from authpi.services.principal import Principal
from authpi.storage import invalidation, row_cache
from authpi.storage.tables.accounts import Account
from authpi.storage.tables.api_keys import ApiKey
from authpi.storage.tables.organizations import OrganizationApiKey

SECRET_PREFIX = "sk_"
UPDATABLE = ("name", "description", "tags", "expires_at", "status_reason", "status_by")
_BAD_CREDENTIALS = "Invalid API key credentials"


# Account keys and organization keys follow the same rules (secret, statuses, lifetime, networks).
KeyRow = ApiKey | OrganizationApiKey


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str


def effective_status(key: Credential, now: int | None = None) -> str:
    if key.status == "active" and key.expires_at is not None and key.expires_at <= (now or now_ms()):
        return "expired"
    return key.status


def ip_allowed(allowlist: Sequence[Any] | None, ip: str) -> bool:
    if not allowlist:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(str(net), strict=False) for net in allowlist)


_UNKNOWN_KEY_DIGEST = hashing.digest("unknown-key")


def rejection(key: Credential | None, secret: str, ip: str | None) -> str | None:
    """Why ``secret`` (from ``ip``, when known) does not authenticate as ``key``, or None when it does:
    ``invalid_credentials``, ``key_<status>`` or ``ip_not_allowed``. An unknown key is compared
    against a dummy digest so timing does not reveal which key IDs exist."""
    stored = key.secret_digest if key is not None else _UNKNOWN_KEY_DIGEST
    if not hashing.matches(secret, stored) or key is None:
        return "invalid_credentials"
    status = effective_status(key)
    if status != "active":
        return f"key_{status}"
    if ip is not None and not ip_allowed(key.ip_allowlist, ip):
        return "ip_not_allowed"
    return None


@dataclass(frozen=True)
class KnownKey:
    """What authenticating a Core API call needs of an account key row, cached per worker (see
    ``authenticate``). It holds the stored digest, never the secret: every call still proves the
    secret against it, in constant time."""

    id: str
    account_id: str
    org_id: str
    secret_digest: str
    status: str
    expires_at: int | None
    scopes: tuple[str, ...]
    ip_allowlist: tuple[str, ...]

    def principal(self) -> Principal:
        return Principal(
            account_id=self.account_id,
            org_id=self.org_id,
            key_id=self.id,
            scopes=self.scopes,
            expires_at=self.expires_at,
            networks=self.ip_allowlist,
        )


# What the credential checks read: a key row, or an account key's cached copy.
Credential = KeyRow | KnownKey

# The row cache's kind for account keys; every change of a key evicts its entry after the commit.
CACHE_KIND = "api_key"
_KEY_ID_MAX = 64


# Built once: building a select per request costs more than running it.
_KNOWN_KEY = (
    select(
        ApiKey.account_id,
        Account.org_id,
        ApiKey.secret_digest,
        ApiKey.status,
        ApiKey.expires_at,
        ApiKey.scopes,
        ApiKey.ip_allowlist,
    )
    .join(Account, Account.id == ApiKey.account_id)
    .where(ApiKey.id == bindparam("key_id"))
)


async def _load_known(session: AsyncSession, key_id: str) -> KnownKey | None:
    """The key and its account's organization, in one statement of plain columns."""
    row = (await session.execute(_KNOWN_KEY, {"key_id": key_id})).first()
    if row is None:
        return None
    account_id, org_id, digest, status, expires_at, scopes, networks = row
    return KnownKey(
        key_id, account_id, org_id, digest, status, expires_at, tuple(scopes), tuple(networks or ())
    )


async def authenticate(session: AsyncSession, key_id: str, secret: str, ip: str) -> Principal:
    """The caller behind ``key_id``:``secret``. The key row comes from the per-worker row cache (a few
    seconds, evicted after any change of the key commits, see ``_forget``), so a busy API key costs
    no statement; an unknown key ID is never cached and always asks the database."""
    known: KnownKey | None = None
    if len(key_id) <= _KEY_ID_MAX:
        # Not ``get_or_load``: that serves an expired entry while the database is unreachable, and a
        # credential must never outlive its revocation that way.
        known = row_cache.rows.get(CACHE_KIND, key_id)
        if known is None:
            known = await _load_known(session, key_id)
            if known is not None:
                row_cache.rows.put(CACHE_KIND, key_id, known)
    reason = rejection(known, secret, ip)
    if reason == "ip_not_allowed":
        raise Unauthorized("This API key may not be used from this address")
    if reason is not None or known is None:
        raise Unauthorized(
            _BAD_CREDENTIALS if reason in (None, "invalid_credentials") else f"This API key is {reason[4:]}"
        )
    return known.principal()


async def _forget(session: AsyncSession, key: ApiKey) -> None:
    """Evict the cached row once the change commits: in this worker at once, in every other worker
    and instance through ``storage.invalidation``."""
    await invalidation.evict_everywhere(session, CACHE_KIND, key.id)


def _validate_scopes(raw_scopes: Any) -> list[str]:
    if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
        raise InvalidInput.on("restrictions.scopes", "invalid_type", "scopes must be a list of strings")
    for scope in raw_scopes:
        if not scope_rules.is_valid(scope):
            raise InvalidInput.on(
                "restrictions.scopes",
                "invalid_scope",
                f"'{scope}' is not <resource path>:<read|write|manage>",
            )
    return list(dict.fromkeys(raw_scopes))


def validate_networks(ips: Any) -> list[str] | None:
    if ips is None:
        return None
    if not isinstance(ips, list):
        raise InvalidInput.on("restrictions.ip_addresses", "invalid_type", "ip_addresses must be a list")
    for net in ips:
        try:
            ipaddress.ip_network(str(net), strict=False)
        except ValueError as exc:
            raise InvalidInput.on(
                "restrictions.ip_addresses", "invalid_cidr", f"'{net}' is not an IP address or CIDR range"
            ) from exc
    return [str(n) for n in ips]


def _validate_restrictions(restrictions: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    ips = restrictions.get("ip_addresses", restrictions.get("ip_allowlist"))
    return _validate_scopes(restrictions.get("scopes", [])), validate_networks(ips)


def _merge_restrictions(key: ApiKey, patch: dict[str, Any]) -> None:
    """PATCH of ``restrictions``, field by field: an omitted field stays as it is, and
    ``ip_addresses: null`` lifts the allowlist."""
    if "scopes" in patch:
        key.scopes = _validate_scopes(patch["scopes"])
    if "ip_addresses" in patch:
        key.ip_allowlist = validate_networks(patch["ip_addresses"])


@dataclass(frozen=True)
class Reach:
    """What a key's credential can do: its status, scopes, lifetime and the addresses it works from."""

    status: str
    scopes: tuple[str, ...]
    expires_at: int | None
    networks: tuple[str, ...]  # empty: any address

    @classmethod
    def of(cls, key: KeyRow) -> Reach:
        return cls(key.status, tuple(key.scopes), key.expires_at, tuple(key.ip_allowlist or ()))


def _lives_longer(before: int | None, after: int | None) -> bool:
    if before is None:
        return False
    return after is None or after > before


def _within(network: str, allowed: Iterable[str]) -> bool:
    """Whether every address of ``network`` is in one of the ``allowed`` networks."""
    inner = ipaddress.ip_network(network, strict=False)
    return any(
        inner.network_address in outer and inner.broadcast_address in outer
        for outer in (ipaddress.ip_network(net, strict=False) for net in allowed)
    )


def _reaches_further(before: Sequence[str], after: Sequence[str]) -> bool:
    if not before:
        return False
    return not after or not all(_within(net, before) for net in after)


def granted_scopes(before: Reach, after: Reach) -> list[str]:
    """The scopes a change hands out. One that gives the key back power it had lost (reactivating it),
    lengthens its life or widens where it works hands out everything the key holds afterwards; any
    other change hands out only the scopes it adds. Changes that only take power away grant nothing."""
    revived = after.status == "active" and before.status != "active"
    if revived or _lives_longer(before.expires_at, after.expires_at):
        return list(after.scopes)
    if _reaches_further(before.networks, after.networks):
        return list(after.scopes)
    return [scope for scope in after.scopes if not scope_rules.covers(before.scopes, scope)]


def _check_grantable(grantor: Principal | None, wanted: Sequence[str], after: Reach) -> None:
    """A caller may only hand out what it holds itself (None: trusted), on create, on any change that
    grants (see ``granted_scopes``) and on rotation, which hands over the whole key: the ``wanted``
    scopes, and, when the caller is limited itself, no address outside its own allowlist and no life
    beyond its own expiry for the key (``after``) that carries them."""
    if grantor is None or not wanted:
        return
    missing = [scope for scope in wanted if not scope_rules.covers(grantor.scopes, scope)]
    if missing:
        raise Forbidden(f"This API key cannot grant scopes it does not hold: {', '.join(missing)}")
    if _reaches_further(grantor.networks, after.networks):
        raise Forbidden("This API key cannot grant access from addresses outside its own IP allowlist")
    if _lives_longer(grantor.expires_at, after.expires_at):
        raise Forbidden("This API key cannot grant access that outlives its own expires_at")


def new_secret_for(key: KeyRow, secret: str | None, hint: str | None) -> str:
    plain = secret or hashing.new_secret(SECRET_PREFIX)
    if len(plain) < 24:
        raise InvalidInput.on("secret", "too_short", "A supplied secret must be at least 24 characters")
    key.secret_digest = hashing.digest(plain)
    key.secret_hint = hint or hashing.hint(plain)
    return plain


async def create_key(
    session: AsyncSession,
    account_id: str,
    *,
    name: str,
    restrictions: dict[str, Any],
    description: str | None = None,
    tags: list[str] | None = None,
    expires_at: int | None = None,
    metadata: dict[str, Any] | None = None,
    secret: str | None = None,
    secret_hint: str | None = None,
    grantor: Principal | None = None,
) -> NewKey:
    key_scopes, ips = _validate_restrictions(restrictions)
    now = now_ms()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput.on("expires_at", "in_past", "expires_at must be in the future")
    key = ApiKey(
        id=ids.api_key_id(),
        account_id=account_id,
        name=name,
        description=description,
        tags=tags,
        scopes=key_scopes,
        ip_allowlist=ips,
        status="active",
        status_at=now,
        expires_at=expires_at,
        metadata_=metadata or {},
        created_at=now,
        updated_at=now,
    )
    _check_grantable(grantor, key_scopes, Reach.of(key))
    plain = new_secret_for(key, secret, secret_hint)
    session.add(key)
    await session.flush()
    await events.emit_for(session, "api-key.created", key, "api_key", account_id=account_id)
    return NewKey(key, plain)


def list_statement(account_id: str, q: str | None, status: str | None) -> Select[Any]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id)
    if q:
        stmt = stmt.where(or_(ApiKey.name.icontains(q, autoescape=True), ApiKey.id == q))
    if status == "expired":
        stmt = stmt.where(
            ApiKey.status == "active", ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now_ms()
        )
    elif status == "active":
        stmt = stmt.where(
            ApiKey.status == "active", or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now_ms())
        )
    elif status:
        stmt = stmt.where(ApiKey.status == status)
    return stmt


async def get_key(session: AsyncSession, account_id: str, key_id: str, *, for_update: bool = False) -> ApiKey:
    stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    if for_update:
        stmt = versions.for_update(stmt)
    key = await session.scalar(stmt)
    if key is None:
        raise NotFound("API key")
    return key


async def update_key(
    session: AsyncSession,
    account_id: str,
    key_id: str,
    changes: dict[str, Any],
    if_match: str | None,
    grantor: Principal | None = None,
) -> ApiKey:
    key = await get_key(session, account_id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    status_before = key.status
    if "name" in changes and changes["name"] is None:
        raise InvalidInput.on("name", "required", "name cannot be null")
    before = Reach.of(key)
    for field in UPDATABLE:
        if field in changes:
            setattr(key, field, changes[field])
    if "metadata" in changes:
        key.metadata_ = changes["metadata"] or {}
    if changes.get("restrictions") is not None:
        _merge_restrictions(key, changes["restrictions"])
    if "status" in changes and changes["status"] is not None:
        transition(key, changes["status"], changes.get("status_reason"), changes.get("status_by"))
    # Nothing is committed when this refuses: the session is rolled back with the request.
    after = Reach.of(key)
    _check_grantable(grantor, granted_scopes(before, after), after)
    await session.flush()
    await _forget(session, key)
    await events.emit_for(
        session, _status_event(status_before, key.status), key, "api_key", account_id=account_id
    )
    return key


# Status changes with an event of their own; any other change of a key is ``api-key.updated``.
_STATUS_EVENTS = {("active", "blocked"): "api-key.blocked", ("blocked", "active"): "api-key.unblocked"}


def _status_event(before: str, after: str) -> str:
    return _STATUS_EVENTS.get((before, after), "api-key.updated")


_ALLOWED = {
    "active": {"blocked", "revoked", "suspended"},
    "blocked": {"active", "revoked"},
    "suspended": {"active", "revoked"},
    "revoked": set(),
}


def transition(key: KeyRow, target: str, reason: str | None, by: str | None) -> None:
    if target == key.status:
        return
    if target not in _ALLOWED.get(key.status, set()):
        raise Conflict(f"An API key cannot go from {key.status} to {target}")
    key.status = target
    key.status_at = now_ms()
    key.status_reason = reason
    key.status_by = by


async def set_status(
    session: AsyncSession,
    account_id: str,
    key_id: str,
    target: str,
    if_match: str | None,
    reason: str | None = None,
    by: str | None = None,
    grantor: Principal | None = None,
) -> ApiKey:
    key = await get_key(session, account_id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    before = Reach.of(key)
    status_before = key.status
    transition(key, target, reason, by)
    after = Reach.of(key)
    _check_grantable(grantor, granted_scopes(before, after), after)
    await session.flush()
    await _forget(session, key)
    if key.status != status_before:
        await events.emit_for(
            session, _status_event(status_before, key.status), key, "api_key", account_id=account_id
        )
    return key


async def rotate(
    session: AsyncSession,
    account_id: str,
    key_id: str,
    if_match: str | None,
    secret: str | None = None,
    grantor: Principal | None = None,
) -> str:
    key = await get_key(session, account_id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    if key.status == "revoked":
        raise Conflict("A revoked API key cannot be rotated")
    # The new secret hands over everything the key can do.
    _check_grantable(grantor, key.scopes, Reach.of(key))
    plain = new_secret_for(key, secret, None)
    key.last_rotated_at = now_ms()
    await session.flush()
    await _forget(session, key)
    await events.emit_for(session, "api-key.updated", key, "api_key", account_id=account_id)
    return plain


async def delete_key(session: AsyncSession, account_id: str, key_id: str, if_match: str | None) -> None:
    key = await get_key(session, account_id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    await events.emit_for(session, "api-key.deleted", key, "api_key", account_id=account_id)
    await _forget(session, key)
    await session.delete(key)
    await session.flush()
