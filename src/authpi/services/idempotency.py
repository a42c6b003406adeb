"""Idempotency-Key bookkeeping (A.9): per account and calling API key, 24 h, fingerprint = method +
path + body. Stored bodies are sealed under the master key, since create and rotate responses carry
new secrets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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
    lease_until: int | None = None  # once claimed: the lease this request holds the record under

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


def _claimed(slot: Slot, lease_until: int) -> Slot:
    return dataclasses.replace(slot, lease_until=lease_until)


async def begin(session: AsyncSession, box: SecretBox, slot: Slot) -> StoredResponse | Slot:
    """Claim ``slot`` in a short transaction of the request's own session: the stored response for a
    replay, or the claimed slot (holding its lease) when the request should run."""
    now = now_ms()
    lease = now + LEASE_MS
    await session.commit()  # end the authentication read: the claim is a transaction of its own
    for _ in range(3):
        record = await session.scalar(
            select(IdempotencyRecord).where(*slot.where()).execution_options(populate_existing=True)
        )
        if record is None:
            session.add(
                IdempotencyRecord(
                    account_id=slot.account_id,
                    principal_id=slot.principal_id,
                    key=slot.key,
                    fingerprint=slot.fingerprint,
                    authority=slot.authority,
                    state="in_flight",
                    lease_until=lease,
                    expires_at=now + TTL_MS,
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                continue
            return _claimed(slot, lease)
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
                    lease_until=lease,
                    expires_at=now + TTL_MS,
                    status_code=None,
                    etag=None,
                    sealed_body=None,
                )
            )
            await session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return _claimed(slot, lease)
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


def _held(slot: Slot) -> tuple[Any, ...]:
    """The slot's record, still in flight under this request's lease."""
    in_flight = IdempotencyRecord.state == "in_flight"
    return (*slot.where(), in_flight, IdempotencyRecord.lease_until == slot.lease_until)


async def store(
    session: AsyncSession, box: SecretBox, slot: Slot, status_code: int, etag: str | None, body: bytes
) -> None:
    """Record a 2xx response (sealed) for replays, in the transaction that made it: one commit makes
    both durable, so a retry after a crash either replays it or finds nothing was done.

    Refused (retryable) when the lease was lost, i.e. another request took the key over: this
    request's transaction must then not commit."""
    kept = body if len(body) <= MAX_STORED_BODY else b""
    result = await session.execute(
        update(IdempotencyRecord)
        .where(*_held(slot))
        .values(
            state="done",
            status_code=status_code,
            etag=etag,
            sealed_body=box.seal(kept, slot.seal_context) if kept else None,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise InFlight()


async def release(session: AsyncSession, slot: Slot) -> None:
    """Give the key back after a request that did not succeed (the caller commits)."""
    await session.execute(delete(IdempotencyRecord).where(*_held(slot)))
