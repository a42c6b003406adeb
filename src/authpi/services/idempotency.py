"""Idempotency-Key bookkeeping (A.9): per account and calling API key, 24 h, fingerprint = method +
path + body. Stored bodies are sealed under the master key, since create and rotate responses carry
new secrets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services.errors import Conflict, Forbidden, InvalidInput, ServiceError
from authpi.services.principal import Principal
from authpi.storage.tables.idempotency import IdempotencyRecord

TTL_MS = 24 * 3600 * 1000
# A request still "in flight" after this long is assumed to have died with its worker.
LEASE_MS = 60 * 1000
MAX_STORED_BODY = 512 * 1024
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Slot:
    """Where one request's record lives. Each caller (API key) has its own namespace of keys, so a
    replay never hands one caller the response another caller's request produced."""

    account_id: str
    principal_id: str
    key: str
    fingerprint: str
    authority: str  # see ``authority_of``

    @property
    def seal_context(self) -> str:
        # Binds a sealed body to its record and request: a copy moved to another row does not open.
        return "\x00".join(("idempotency", self.account_id, self.principal_id, self.key, self.fingerprint))

    def where(self) -> tuple[Any, ...]:
        return (
            IdempotencyRecord.account_id == self.account_id,
            IdempotencyRecord.principal_id == self.principal_id,
            IdempotencyRecord.key == self.key,
        )


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    etag: str | None
    body: bytes


class InFlight(Conflict):
    retryable = True  # the same request succeeds (or replays) once the first one has finished

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is currently being processed")
        self.retry_after = RETRY_AFTER_S


class KeyReused(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Idempotency-Key has already been used with a different request body")


def _canonical(body: bytes) -> bytes:
    """Equal JSON documents fingerprint alike, whatever their whitespace or key order."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:  # not JSON (or empty): compare the bytes
        return body


def fingerprint(method: str, path: str, body: bytes) -> str:
    hasher = hashlib.sha256()
    for part in (method.encode(), path.encode(), _canonical(body)):
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


def authority_of(principal: Principal) -> str:
    """A digest of what the caller may do. A stored response is replayed only while it is unchanged:
    it may hold what the caller granted then (a new key's secret) and could no longer grant now."""
    held = [sorted(principal.scopes), principal.expires_at, sorted(principal.networks)]
    return hashlib.sha256(json.dumps(held, separators=(",", ":")).encode()).hexdigest()


class AuthorityChanged(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "This API key's scopes or limits changed since it first sent this Idempotency-Key; "
            "the stored response is not replayed"
        )


def validate_key(key: str) -> None:
    if not 1 <= len(key) <= 256 or not key.isprintable():
        raise ServiceError("Idempotency-Key must be 1 to 256 printable characters")


async def begin(
    sessions: async_sessionmaker[AsyncSession], box: SecretBox, slot: Slot
) -> StoredResponse | None:
    """Claim ``slot``; return the stored response for a replay, or None when the caller should run."""
    now = now_ms()
    async with sessions() as session:
        for _ in range(3):
            record = await session.get(IdempotencyRecord, (slot.account_id, slot.principal_id, slot.key))
            if record is None:
                session.add(
                    IdempotencyRecord(
                        account_id=slot.account_id,
                        principal_id=slot.principal_id,
                        key=slot.key,
                        fingerprint=slot.fingerprint,
                        authority=slot.authority,
                        state="in_flight",
                        lease_until=now + LEASE_MS,
                        expires_at=now + TTL_MS,
                    )
                )
                try:
                    await session.commit()
                    return None
                except IntegrityError:
                    await session.rollback()
                    continue
            if record.expires_at <= now or (record.state == "in_flight" and record.lease_until <= now):
                # Expired, or abandoned by a crashed worker: take it over atomically.
                result = await session.execute(
                    update(IdempotencyRecord)
                    .where(
                        *slot.where(),
                        IdempotencyRecord.lease_until == record.lease_until,
                        IdempotencyRecord.state == record.state,
                    )
                    .values(
                        fingerprint=slot.fingerprint,
                        authority=slot.authority,
                        state="in_flight",
                        lease_until=now + LEASE_MS,
                        expires_at=now + TTL_MS,
                        status_code=None,
                        etag=None,
                        sealed_body=None,
                    )
                )
                await session.commit()
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    return None
                session.expunge_all()
                continue
            if record.fingerprint != slot.fingerprint:
                raise KeyReused()
            if record.authority != slot.authority:
                raise AuthorityChanged()
            if record.state == "in_flight":
                raise InFlight()
            body = box.open(record.sealed_body, slot.seal_context) if record.sealed_body else b""
            return StoredResponse(record.status_code or 200, record.etag, body)
    raise InFlight()


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    box: SecretBox,
    slot: Slot,
    status_code: int,
    etag: str | None,
    body: bytes,
) -> None:
    """Store a 2xx response (sealed) for replays; release the key after any other outcome."""
    async with sessions() as session:
        if 200 <= status_code < 300:
            kept = body if len(body) <= MAX_STORED_BODY else b""
            await session.execute(
                update(IdempotencyRecord)
                .where(*slot.where())
                .values(
                    state="done",
                    status_code=status_code,
                    etag=etag,
                    sealed_body=box.seal(kept, slot.seal_context) if kept else None,
                )
            )
        else:
            await session.execute(delete(IdempotencyRecord).where(*slot.where()))
        await session.commit()
