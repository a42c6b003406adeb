"""Housekeeping: expired and deleted state is purged continuously, in small batches, and keys get
their monthly rotation, by one process at a time (a short lease in ``leases``).

Every purge is a table row: which rows of which table may go, given the pass's cut-offs. A batch
is one ``DELETE … WHERE key IN (SELECT key … LIMIT n)`` in a transaction of its own, so SQLite
writers wait for at most one small batch; the pass yields between batches. Dependents come before
the rows they belong to, so a purged user or issuer never deletes an unbounded cascade at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, delete, exists, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.oidc import keys
from authpi.services import events, sessions
from authpi.settings import Settings
from authpi.storage import dialects, invalidation
from authpi.storage.tables.base import Base
from authpi.storage.tables.cache_invalidations import CacheInvalidation
from authpi.storage.tables.clients import Client
from authpi.storage.tables.events import Event
from authpi.storage.tables.idempotency import IdempotencyRecord
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.leases import Lease
from authpi.storage.tables.lockouts import CredentialLockout
from authpi.storage.tables.messages import Message
from authpi.storage.tables.oauth import (
    AuthorizationCode,
    AuthorizationRequest,
    Consent,
    RefreshToken,
    RevokedToken,
)
from authpi.storage.tables.one_time_codes import OneTimeCode
from authpi.storage.tables.organizations import (
    Group,
    Invitation,
    Membership,
    MembershipGroup,
    Organization,
    OrganizationApiKey,
    SsoDomain,
)
from authpi.storage.tables.passkey_challenges import PasskeyChallenge
from authpi.storage.tables.sessions import Session, idle_deadline
from authpi.storage.tables.signing_keys import SigningKey
from authpi.storage.tables.upstream import UpstreamRequest
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import TrustedDevice, Verifier
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

log = logging.getLogger("authpi.housekeeping")

LEASE = "housekeeping"
LEASE_MARGIN_S = 10.0
BATCH_ROWS = 500
# A pass stops a purge after this many batches (the rest waits for the next pass), so one large
# backlog can delay neither the other tables nor the key rotation for long.
MAX_BATCHES = 200
PAUSE_S = 0.02  # between batches: other writers get the database in between
ENDED = ("revoked", "expired")  # a session's terminal statuses
# A pending authorization request stays this long past its expiry, so a sign-in page used late is
# told apart from a made-up link and recorded (``auth.flow.expired``).
FLOW_GRACE_MS = 3_600_000


@dataclass(frozen=True)
class Cutoffs:
    """The moments one pass measures against (ms)."""

    now: int
    ended_before: int  # expired or revoked before this: kept no longer (AUTHPI_EXPIRED_RETENTION)
    deleted_before: int  # soft-deleted before this: purged (AUTHPI_PURGE_AFTER)
    events_before: int = 0  # events older than this: purged (AUTHPI_EVENT_RETENTION)


@dataclass(frozen=True)
class Purge:
    """Rows of ``model`` that may go once ``doomed`` holds for them."""

    model: type[Base]
    doomed: Callable[[Cutoffs], ColumnElement[bool]]
    batch: int = BATCH_ROWS

    @property
    def table(self) -> Table:
        table: Table = self.model.__table__  # type: ignore[assignment]
        return table

    def statement(self, cut: Cutoffs) -> Any:
        key = list(self.table.primary_key.columns)
        # correlate(None): the chosen rows come from their own scan, not from the DELETE's row.
        chosen = select(*key).where(self.doomed(cut)).limit(self.batch).correlate(None)
        target = key[0] if len(key) == 1 else tuple_(*key)
        return delete(self.table).where(target.in_(chosen))


def _deleted(model: Any, before: int) -> Select[Any]:
    """IDs of users, clients or issuers soft-deleted before ``before``."""
    return select(model.id).where(model.status == "deleted", model.deleted_at <= before)


def _deleted_webhooks(before: int) -> Select[Any]:
    return select(Webhook.id).where(Webhook.status == "deleted", Webhook.status_at <= before)


def _deleting_orgs() -> Select[Any]:
    """Organizations deleted through the API: removed at the next pass, dependents first."""
    return select(Organization.id).where(Organization.status == "deleting")


def _idle_and_alone(cut: Cutoffs) -> ColumnElement[bool]:
    """Active sessions idle past their timeout. A browser session whose client sessions may still
    be in use stays: they live on their own activity, and lose their anchor without it."""
    child = aliased(Session)
    in_use = exists().where(child.op_session_id == Session.id, child.status.not_in(ENDED))
    return (Session.status == "active") & (idle_deadline() <= cut.ended_before) & ~in_use


_ORG_PARTS: tuple[Any, ...] = (Membership, Group, Invitation, OrganizationApiKey, SsoDomain)


def _org_part(model: Any) -> Purge:
    def doomed(_: Cutoffs) -> ColumnElement[bool]:
        column: ColumnElement[bool] = model.org_id.in_(_deleting_orgs())
        return column

    return Purge(model, doomed)


PURGES: Sequence[Purge] = (
    # Short-lived protocol state, gone at expiry (codes after the retention, for replay detection).
    Purge(AuthorizationRequest, lambda c: AuthorizationRequest.expires_at <= c.now - FLOW_GRACE_MS),
    Purge(AuthorizationCode, lambda c: AuthorizationCode.expires_at <= c.ended_before),
    Purge(RefreshToken, lambda c: RefreshToken.expires_at <= c.ended_before),
    Purge(RevokedToken, lambda c: RevokedToken.expires_at <= c.now),
    Purge(IdempotencyRecord, lambda c: IdempotencyRecord.expires_at <= c.now),
    Purge(CredentialLockout, lambda c: CredentialLockout.expires_at <= c.now),
    # TOTP enrollments never confirmed (active verifiers have no expiry).
    Purge(Verifier, lambda c: (Verifier.status == "pending") & (Verifier.expires_at <= c.now)),
    Purge(PasskeyChallenge, lambda c: PasskeyChallenge.expires_at <= c.now),
    # Codes and links sent by mail or SMS, kept an hour past expiry so a late one is told "expired"
    # or "used" rather than "wrong".
    Purge(OneTimeCode, lambda c: OneTimeCode.expires_at <= c.now - FLOW_GRACE_MS),
    Purge(UpstreamRequest, lambda c: UpstreamRequest.expires_at <= c.now),
    # Trusted devices past their trust period (revoked ones are deleted at once).
    Purge(TrustedDevice, lambda c: TrustedDevice.expires_at <= c.now),
    Purge(SigningKey, lambda c: SigningKey.unpublish_at <= c.now),
    # Cache evictions for SQLite's workers (storage.invalidation), applied within a second.
    Purge(CacheInvalidation, lambda c: CacheInvalidation.created_at <= c.now - invalidation.KEEP_ROWS_MS),
    # The event log keeps AUTHPI_EVENT_RETENTION of history.
    # By ID, not timestamp: event IDs are ULIDs of their millisecond, and the primary key serves the range.
    Purge(Event, lambda c: Event.id < ids.ulid(events.ID_PREFIX, c.events_before, lowest=True)),
    # Finished webhook deliveries go with their events; owed ones stay until they end.
    Purge(
        WebhookDelivery,
        lambda c: (
            WebhookDelivery.status.in_(("succeeded", "failed"))
            & (WebhookDelivery.created_at < c.events_before)
        ),
    ),
    # Sent and failed messages (their sealed codes and links) for the retention after they ended;
    # owed ones stay until they end.
    Purge(Message, lambda c: Message.status.in_(("sent", "failed")) & (Message.updated_at <= c.ended_before)),
    # Sessions stay visible (sessions API, audit) for the retention after they ended.
    Purge(Session, lambda c: Session.expires_at <= c.ended_before),
    Purge(Session, lambda c: Session.status.in_(ENDED) & (Session.status_at <= c.ended_before)),
    Purge(Session, _idle_and_alone),
    # Soft-deleted resources after AUTHPI_PURGE_AFTER (decision 8), their dependents first.
    Purge(Consent, lambda c: Consent.user_id.in_(_deleted(User, c.deleted_before))),
    Purge(Session, lambda c: Session.user_id.in_(_deleted(User, c.deleted_before))),
    Purge(User, lambda c: User.id.in_(_deleted(User, c.deleted_before)), batch=100),
    Purge(Consent, lambda c: Consent.client_id.in_(_deleted(Client, c.deleted_before))),
    Purge(Client, lambda c: Client.id.in_(_deleted(Client, c.deleted_before)), batch=100),
    Purge(Session, lambda c: Session.issuer_id.in_(_deleted(Issuer, c.deleted_before))),
    Purge(User, lambda c: User.issuer_id.in_(_deleted(Issuer, c.deleted_before)), batch=100),
    Purge(Client, lambda c: Client.issuer_id.in_(_deleted(Issuer, c.deleted_before)), batch=100),
    # What is left of an issuer (keys, methods, codes, tokens …) goes with it by cascade.
    Purge(Issuer, lambda c: Issuer.id.in_(_deleted(Issuer, c.deleted_before)), batch=5),
    # A deleted organization, in batches: its members' group links, members, groups, invitations,
    # keys and domains, then the organization.
    Purge(
        MembershipGroup,
        lambda c: MembershipGroup.membership_id.in_(
            select(Membership.id).where(Membership.org_id.in_(_deleting_orgs()))
        ),
    ),
    *(_org_part(model) for model in _ORG_PARTS),
    Purge(Organization, lambda c: Organization.id.in_(_deleting_orgs()), batch=20),
    # A deleted webhook (its status_at is the deletion) and its delivery history.
    Purge(WebhookDelivery, lambda c: WebhookDelivery.webhook_id.in_(_deleted_webhooks(c.deleted_before))),
    Purge(Webhook, lambda c: Webhook.id.in_(_deleted_webhooks(c.deleted_before)), batch=100),
)


# --- the lease --------------------------------------------------------------------------------------


def new_holder() -> str:
    """Names this process in the lease row (for operators: host and pid, plus a random part)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


async def claim(session: AsyncSession, holder: str, seconds: float, name: str = LEASE) -> bool:
    """Take the lease, or renew it when ``holder`` has it; False while another holder's is running.
    The database decides: a conditional UPDATE, or an INSERT that does nothing on conflict."""
    now = now_ms()
    until = now + int(seconds * 1000)
    current = (
        await session.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name))
    ).first()
    await session.rollback()  # the write below, if any, starts a transaction of its own
    if current is not None and current.holder != holder and current.expires_at > now:
        return False  # the common case for every process but one: no write at all
    taken = await session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at <= now))
        .values(holder=holder, expires_at=until)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        taken = await session.execute(
            dialects.upsert(session, Lease.__table__)
            .values(name=name, holder=holder, expires_at=until)
            .on_conflict_do_nothing(index_elements=["name"])
        )
    await session.commit()
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


async def release(session: AsyncSession, holder: str, name: str = LEASE) -> None:
    """Give the lease up (at shutdown), so the next process to start takes it at once."""
    await session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=0)
    )
    await session.commit()


async def _finished(session: AsyncSession, holder: str, name: str = LEASE) -> None:
    await session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(last_run_at=now_ms())
    )
    await session.commit()


class LeaseLost(Exception):
    """Another process holds the lease now (this one stalled past it): the pass stops."""


# --- the pass -----------------------------------------------------------------------------------


class Housekeeper:
    """Runs passes in this process whenever it holds the lease.

    The lease lasts one interval plus 10 s and is renewed at every pass and during long ones, so
    the holder keeps it while alive (the margin covers a late timer), a crashed holder's lease runs
    out soon after, and a holder that stops releases it, so a restart runs a pass at once."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._box = box
        self.interval = settings.housekeeping_interval
        self.lease_seconds = self.interval + LEASE_MARGIN_S
        self._retention_ms = settings.expired_retention * 1000
        self._purge_after_ms = settings.purge_after * 1000
        self._event_retention_ms = settings.event_retention * 1000
        self.holder = new_holder()
        self._claimed_at = 0.0

    async def _claim(self) -> bool:
        async with self._sessions() as session:
            held = await claim(session, self.holder, self.lease_seconds)
        if held:
            self._claimed_at = time.monotonic()
        return held

    async def _keep(self) -> None:
        """Renew the lease during a long pass (well before it could run out)."""
        if time.monotonic() - self._claimed_at > self.lease_seconds / 4 and not await self._claim():
            raise LeaseLost

    async def run_once(self) -> dict[str, int] | None:
        """One pass if this process holds the lease (None when another one does): rows purged
        per table."""
        if not await self._claim():
            return None
        now = now_ms()
        cut = Cutoffs(
            now, now - self._retention_ms, now - self._purge_after_ms, now - self._event_retention_ms
        )
        purged: dict[str, int] = {}
        try:
            expired = await self._expire_sessions(cut)
            for purge in PURGES:
                count = await self._purge(purge, cut)
                if count:
                    purged[purge.table.name] = purged.get(purge.table.name, 0) + count
            await self._keep()
        except LeaseLost:
            log.warning("housekeeping stalled past its lease; another process carries on")
            return None
        async with self._sessions() as session:
            rotated = await keys.rotate_due(session, self._box)
            await _finished(session, self.holder)
        if purged or rotated or expired:
            log.info(
                "housekeeping: expired %d sessions, purged %s, rotated %d keys", expired, purged, rotated
            )
        return purged

    async def _expire_sessions(self, cut: Cutoffs) -> int:
        """Sessions whose time ran out become ``expired``, each with its ``session.expired`` event,
        in batches of their own like the purges: at most ``MAX_BATCHES * BATCH_ROWS`` per pass
        (a backlog larger than that, e.g. after an upgrade, is worked off over the next passes)."""
        total = 0
        for _ in range(MAX_BATCHES):
            await self._keep()
            async with self._sessions() as session:
                count = await sessions.expire_lapsed(session, cut.now, BATCH_ROWS)
                await session.commit()
            total += count
            if count < BATCH_ROWS:
                break
            await asyncio.sleep(PAUSE_S)
        return total

    async def _purge(self, purge: Purge, cut: Cutoffs) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            await self._keep()
            async with self._sessions() as session:
                result = await session.execute(purge.statement(cut))
                await session.commit()
            count = int(result.rowcount)  # type: ignore[attr-defined]
            total += count
            if count < purge.batch:
                break
            await asyncio.sleep(PAUSE_S)
        return total

    async def release(self) -> None:
        async with self._sessions() as session:
            await release(session, self.holder)
