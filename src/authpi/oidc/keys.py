"""Per-issuer signing keys (decision 10): one active key per algorithm, rotated monthly, retired
keys published for 45 days. Keys are cached in memory; the database is read only on a miss or
after the cache's freshness window. A rotation evicts the issuer's keys in every worker of every
instance (``storage.invalidation``, kind ``signing_keys``); the freshness window is the backstop."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from joserfc.jwk import ECKey, KeyParameters, KeySet, OKPKey, RSAKey
from joserfc.jwk import Key as AnyKey
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.storage import dialects, invalidation
from authpi.storage.errors import is_transient
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.signing_keys import SigningKey

warnings.filterwarnings("ignore", message="EdDSA is deprecated")
log = logging.getLogger("authpi.keys")

ALGORITHMS = ("ES256", "EdDSA", "RS256")
ROTATE_AFTER_MS = 30 * 86400 * 1000
PUBLISH_RETIRED_MS = 45 * 86400 * 1000
CACHE_SECONDS = 600.0  # the backstop: a rotation evicts at once, an unpublish time reloads
UNKNOWN_KID_RELOAD_SECONDS = 5.0
SIGNING_KEYS = "signing_keys"  # the eviction kind (storage.invalidation); the key is the issuer ID

Jwk = ECKey | OKPKey | RSAKey


def _generate(alg: str, kid: str) -> Jwk:
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params)
    return RSAKey.generate_key(2048, parameters=params)


def _import(private: dict[str, Any]) -> Jwk:
    kty = private["kty"]
    if kty == "EC":
        return ECKey.import_key(private)
    if kty == "OKP":
        return OKPKey.import_key(private)
    return RSAKey.import_key(private)


def _kid_of(token: str) -> str | None:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _context(kid: str) -> str:
    return f"signing_key:{kid}"


def sealed_by(box: SecretBox, row: SigningKey) -> bool:
    """Whether ``row``'s private key was sealed under ``box``'s master key."""
    return box.opens(row.sealed_private, _context(row.kid))


class StoredKey:
    """One stored key as a worker holds it. The public half is imported when loaded (cheap); the
    private half is unsealed at once but imported the first time something signs with it: importing an
    RSA-2048 private key costs ~60 ms (cryptography checks the key), so an issuer whose clients
    only sign ES256 never pays it. A reload keeps the object of a key whose row did not change
    (same kid, sealed blob and public JWK), so it is imported once per worker, not once per
    freshness window."""

    __slots__ = ("_private", "_private_jwk", "kid", "public", "public_jwk", "sealed")

    def __init__(self, box: SecretBox, kid: str, sealed: str, public_jwk: dict[str, Any]) -> None:
        # Unsealed at once (AES-GCM, microseconds): a key sealed under another master key fails
        # the load that meets it, loudly, not the first token it would sign.
        self._private_jwk: bytes | None = box.open(sealed, _context(kid))
        self._private: Jwk | None = None
        self.kid = kid
        self.sealed = sealed
        self.public_jwk = public_jwk
        self.public = _import(public_jwk)

    def same_row(self, row: SigningKey) -> bool:
        return self.kid == row.kid and self.sealed == row.sealed_private and self.public_jwk == row.public_jwk

    def private(self) -> Jwk:
        if self._private is None:
            assert self._private_jwk is not None
            self._private = _import(json.loads(self._private_jwk))
            self._private_jwk = None  # the key object holds it from now on
        return self._private


@dataclass(frozen=True)
class IssuerKeys:
    """What one issuer signs with and publishes."""

    signing: dict[str, StoredKey]  # the active key per algorithm
    verification: KeySet
    jwks_body: bytes
    loaded_at: float
    kids: frozenset[str]
    stored: dict[str, StoredKey]  # every published key by kid: what the next load reuses
    # The earliest time (ms) a loaded key stops being published: the entry is due for a reload
    # then, however long its freshness window is.
    next_unpublish_ms: int | None = None

    def signer(self, alg: str) -> Jwk:
        """The private key that signs ``alg`` (imported on first use)."""
        return self.signing[alg].private()


def _new_key(box: SecretBox, issuer_id: str, alg: str) -> dict[str, Any]:
    """The column values of a fresh key (generating an RSA key takes a while: no transaction is open)."""
    kid = str(uuid.uuid4())
    key = _generate(alg, kid)
    public: dict[str, Any] = dict(key.as_dict(private=False))
    public["ext"] = True  # parity with the hosted service's WebCrypto export
    return {
        "kid": kid,
        "issuer_id": issuer_id,
        "alg": alg,
        "public_jwk": public,
        "sealed_private": box.seal(json.dumps(key.as_dict(private=True)).encode(), _context(kid)),
        "created_at": now_ms(),
    }


async def _install(session: AsyncSession, values: dict[str, Any], replaces: str | None, now: int) -> bool:
    """Make a new key the active one of its algorithm, retiring ``replaces`` (the active key read
    before, if any). The database decides between concurrent callers: the retirement is
    conditional and at most one active key per issuer and algorithm can exist (a unique index),
    so a caller that lost the race changes nothing and returns False."""
    if replaces is not None:
        retired = await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == replaces, SigningKey.retired_at.is_(None))
            .values(retired_at=now, unpublish_at=now + PUBLISH_RETIRED_MS)
        )
        if retired.rowcount != 1:  # type: ignore[attr-defined]
            return False
    inserted = await session.execute(
        dialects.upsert(session, SigningKey.__table__)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["issuer_id", "alg"], index_where=SigningKey.retired_at.is_(None)
        )
    )
    return bool(inserted.rowcount == 1)  # type: ignore[attr-defined]


async def rotate_issuer(session: AsyncSession, box: SecretBox, issuer_id: str, *, force: bool) -> int:
    """Give every algorithm a fresh key when forced or when the current one is a month old (or
    missing); retire the previous key (still published for 45 days). Returns how many keys this
    call created: a key another process created or rotated meanwhile counts as done."""
    current = await _active_rows(session, issuer_id)
    await session.commit()  # no transaction stays open while keys are generated
    now = now_ms()
    due = [
        alg
        for alg in ALGORITHMS
        if alg not in current or force or now - current[alg].created_at >= ROTATE_AFTER_MS
    ]
    if not due:
        return 0
    fresh = await asyncio.to_thread(lambda: {alg: _new_key(box, issuer_id, alg) for alg in due})
    created = 0
    for alg in due:
        row = current.get(alg)
        created += await _install(session, fresh[alg], row.kid if row else None, now_ms())
    if created:
        await invalidation.evict_everywhere(session, SIGNING_KEYS, issuer_id)
    await session.commit()
    return created


async def _active_rows(session: AsyncSession, issuer_id: str) -> dict[str, SigningKey]:
    rows = await session.scalars(
        select(SigningKey).where(SigningKey.issuer_id == issuer_id, SigningKey.retired_at.is_(None))
    )
    return {row.alg: row for row in rows}


async def _load(
    session: AsyncSession, box: SecretBox, issuer_id: str, known: dict[str, StoredKey] | None = None
) -> IssuerKeys:
    """The issuer's published keys; a key already in ``known`` (the previous load) whose row did not
    change is reused as is, so only new keys are imported."""
    now = now_ms()
    rows = list(
        await session.scalars(
            select(SigningKey).where(
                SigningKey.issuer_id == issuer_id,
                or_(SigningKey.unpublish_at.is_(None), SigningKey.unpublish_at > now),
            )
        )
    )
    known = known or {}
    signing: dict[str, StoredKey] = {}
    stored: dict[str, StoredKey] = {}
    newest: dict[str, int] = {}
    published: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: r.created_at, reverse=True):
        published.append(row.public_jwk)
        key = known.get(row.kid)
        if key is None or not key.same_row(row):
            key = StoredKey(box, row.kid, row.sealed_private, row.public_jwk)
        stored[row.kid] = key
        if row.retired_at is None and row.created_at > newest.get(row.alg, -1):
            signing[row.alg] = key
            newest[row.alg] = row.created_at
    body = json.dumps({"keys": published}, separators=(",", ":")).encode()
    verifiers: list[AnyKey] = [key.public for key in stored.values()]
    unpublish = [row.unpublish_at for row in rows if row.unpublish_at is not None]
    next_unpublish = min(unpublish, default=None)
    loaded_at = time.monotonic()
    return IssuerKeys(signing, KeySet(verifiers), body, loaded_at, frozenset(stored), stored, next_unpublish)


async def master_key_opens_stored_keys(session: AsyncSession, box: SecretBox) -> bool:
    """Whether the master key opens a stored private key (any one: all are sealed under the same
    key). True while no key is stored yet, since there is nothing it could fail to open."""
    row = (await session.execute(select(SigningKey.kid, SigningKey.sealed_private).limit(1))).first()
    if row is None:
        return True
    try:
        box.open(row.sealed_private, _context(row.kid))
    except (InvalidTag, ValueError):
        return False
    return True


class KeyCache:
    """In-memory keys per issuer; creates the first generation on first use.

    ``sessions`` should come from a pool of its own: a request that already holds a pooled
    connection may wait here, so loading keys must never need a connection from the same pool.
    Once keys are cached, a stale entry is served while one background task reloads it, so the
    expiry of the cache never stalls requests. While the database is unreachable that reload fails
    and the entry keeps serving, for at most ``stale_for`` seconds past its freshness."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        fresh_for: float = CACHE_SECONDS,
        stale_for: float = 300.0,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._fresh_for = fresh_for
        self._stale_for = stale_for
        self._cache: dict[str, IssuerKeys] = {}
        # Each issuer's keys as last loaded, kept across evictions and clears: an eviction means
        # "look again", and a key whose row is unchanged is the same key, so it is not re-imported.
        self._stored: dict[str, dict[str, StoredKey]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[str, asyncio.Task[IssuerKeys]] = {}

    def invalidate(self, issuer_id: str) -> None:
        self._cache.pop(issuer_id, None)

    def evict(self, kind: str, key: str) -> None:
        """An eviction from ``storage.invalidation`` (every kind arrives; only keys concern us)."""
        if kind == SIGNING_KEYS:
            self.invalidate(key)

    def clear(self) -> None:
        self._cache.clear()

    async def for_token(self, issuer_id: str, token: str) -> IssuerKeys:
        """Keys able to verify ``token``: reloads early when its ``kid`` is unknown, since another
        process may have rotated (at most once every few seconds, so junk tokens cannot force reloads)."""
        keys = await self.get(issuer_id)
        kid = _kid_of(token)
        if kid is None or kid in keys.kids or time.monotonic() - keys.loaded_at < UNKNOWN_KID_RELOAD_SECONDS:
            return keys
        self.invalidate(issuer_id)
        return await self.get(issuer_id)

    async def get(self, issuer_id: str) -> IssuerKeys:
        cached = self._cache.get(issuer_id)
        if cached is None:
            return await self._reload(issuer_id)
        age = time.monotonic() - cached.loaded_at
        if age >= self._fresh_for + self._stale_for:
            return await self._reload(issuer_id)  # too old to serve even through an outage
        if not self._fresh(cached) and issuer_id not in self._refreshing:
            task = asyncio.create_task(self._reload(issuer_id))
            self._refreshing[issuer_id] = task
            task.add_done_callback(lambda done: self._refreshed(issuer_id, done))
        return cached

    def _fresh(self, keys: IssuerKeys) -> bool:
        """Within its freshness window, and no loaded key has reached its unpublish time."""
        if time.monotonic() - keys.loaded_at >= self._fresh_for:
            return False
        return keys.next_unpublish_ms is None or now_ms() < keys.next_unpublish_ms

    def _refreshed(self, issuer_id: str, task: asyncio.Task[IssuerKeys]) -> None:
        self._refreshing.pop(issuer_id, None)
        exc = None if task.cancelled() else task.exception()
        # The cached keys keep serving and the next request tries again; a busy or unreachable
        # database is no news (storage.health logs outages), anything else is a bug worth a trace.
        if exc is not None and not is_transient(exc):
            log.error("reloading the signing keys of %s failed", issuer_id, exc_info=exc)

    async def _reload(self, issuer_id: str) -> IssuerKeys:
        lock = self._locks.setdefault(issuer_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(issuer_id)
            if cached is not None and self._fresh(cached):
                return cached
            known = self._stored.get(issuer_id)
            async with self._sessions() as session:
                keys = await _load(session, self._box, issuer_id, known)
                if set(keys.signing) != set(ALGORITHMS):
                    # Every worker may get here at once for a new issuer: one creates the keys,
                    # the others' inserts change nothing, and all of them load the winner's keys.
                    await rotate_issuer(session, self._box, issuer_id, force=False)
                    keys = await _load(session, self._box, issuer_id, keys.stored)
            self._cache[issuer_id] = keys
            self._stored[issuer_id] = keys.stored  # retired-and-unpublished kids drop out here
            return keys


async def rotate_all(session: AsyncSession, box: SecretBox, *, force: bool) -> int:
    """Rotate every live issuer's keys (forced, or those due for the monthly rotation)."""
    issuer_ids = list(await session.scalars(select(Issuer.id).where(Issuer.status != "deleted")))
    created = 0
    for issuer_id in issuer_ids:
        created += await rotate_issuer(session, box, issuer_id, force=force)
    return created


async def rotate_due(session: AsyncSession, box: SecretBox, *, limit: int = 100) -> int:
    """The monthly rotation: new keys for live issuers whose active key is 30 days old (up to
    ``limit`` issuers per call; the rest wait for the next call). Issuers that never signed
    anything get their first keys when first used, not here."""
    due = (
        select(SigningKey.issuer_id)
        .join(Issuer, Issuer.id == SigningKey.issuer_id)
        .where(
            SigningKey.retired_at.is_(None),
            SigningKey.created_at <= now_ms() - ROTATE_AFTER_MS,
            Issuer.status != "deleted",
        )
        .distinct()
        .limit(limit)
    )
    issuer_ids = list(await session.scalars(due))
    created = 0
    for issuer_id in issuer_ids:
        created += await rotate_issuer(session, box, issuer_id, force=False)
    return created
