"""Webhooks (§C.12): an account's subscriptions to event types, with their auth secrets and statuses.

Secrets: a signature secret (``whs_`` + standard base64 of 32 random bytes, so a Standard Webhooks
verifier takes it without the prefix) and a bearer token (``whb_…``), sealed under the master key
(the sender needs them back) and shown in plain only in the response that creates them: on create,
and on update when ``auth.regenerate_signature_secret`` / ``auth.regenerate_bearer_token`` is true
or ``auth.type`` switches to a type that needs a secret the webhook does not have yet. A type that no
longer needs a secret forgets it.

Statuses: ``active``; ``disabled`` (paused by the account: ``webhook.paused``; back to active:
``webhook.resumed``); ``failing`` (set by the sender's circuit breaker); ``deleted`` (soft delete:
the webhook disappears from GET and from the default list, and what it was still owed fails).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, versions, webhook_rules
from authpi.services.errors import FieldProblem, InvalidRequest, NotFound
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

ID_PREFIX = "wh_"
SIGNATURE_SECRET_PREFIX = "whs_"
BEARER_TOKEN_PREFIX = "whb_"
SIGNATURE_ALGORITHM = "hmac-sha256"
AUTH_TYPES = ("none", "bearer", "signature", "bearer+signature")
DEFAULT_AUTH_TYPE = "signature"
STATUSES = ("active", "disabled", "failing", "deleted")
# Statuses an account may set with PATCH (``failing`` is the sender's, ``deleted`` is DELETE's).
SETTABLE_STATUSES = ("active", "disabled")
# Deliveries still owed to a webhook (the sender's work queue).
OWED = ("pending", "retrying")
WHAT = "Webhook"
HINT_LENGTH = 4

_CREATE_AUTH_KEYS = frozenset({"type", "signature_algorithm"})
_UPDATE_AUTH_KEYS = _CREATE_AUTH_KEYS | {"regenerate_signature_secret", "regenerate_bearer_token"}


def signature_context(webhook_id: str) -> str:
    return f"webhook-signature:{webhook_id}"


def bearer_context(webhook_id: str) -> str:
    return f"webhook-bearer:{webhook_id}"


def new_signature_secret() -> str:
    return SIGNATURE_SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def new_bearer_token() -> str:
    return BEARER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def uses_signature(auth_type: str) -> bool:
    return auth_type in ("signature", "bearer+signature")


def uses_bearer(auth_type: str) -> bool:
    return auth_type in ("bearer", "bearer+signature")


@dataclass
class Saved:
    """A created or updated webhook and the secrets this change generated (plain, shown once)."""

    webhook: Webhook
    secrets: dict[str, str] = field(default_factory=dict)


def auth_view(row: Webhook) -> dict[str, Any]:
    """The readable ``auth`` of a webhook: its type, algorithm and secret hints, never a secret."""
    view: dict[str, Any] = {"type": row.auth_type}
    if uses_signature(row.auth_type):
        view["signature_algorithm"] = row.signature_algorithm or SIGNATURE_ALGORITHM
        view["signature_secret_hint"] = row.signature_secret_hint
    if uses_bearer(row.auth_type):
        view["bearer_token_hint"] = row.bearer_token_hint
    return view


def describe(row: Webhook) -> dict[str, Any]:
    """The webhook as GET shows it; also the data of its events."""
    return {
        "id": row.id,
        "account_id": row.account_id,
        "name": row.name,
        "description": row.description,
        "url": row.url,
        "status": row.status,
        "status_at": row.status_at,
        "status_reason": row.status_reason,
        "status_by": row.status_by,
        "auth": auth_view(row),
        "events": list(row.events),
        "subjects": row.subjects,
        "retry": row.retry,
        "circuit_breaker": row.circuit_breaker,
        "metadata": row.metadata_,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# --- auth -------------------------------------------------------------------------------------------


def _auth_input(auth: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(auth, Mapping):
        raise InvalidRequest([FieldProblem("auth", "invalid_type", "auth must be an object")])
    problems = [
        FieldProblem(f"auth.{key}", "unknown_field", f"auth has no field '{key}'")
        for key in auth
        if key not in allowed
    ]
    kind = auth.get("type")
    if "type" in auth and kind not in AUTH_TYPES:
        problems.append(
            FieldProblem("auth.type", "invalid_choice", f"auth.type must be one of: {', '.join(AUTH_TYPES)}")
        )
    algorithm = auth.get("signature_algorithm")
    if algorithm is not None and algorithm != SIGNATURE_ALGORITHM:
        problems.append(
            FieldProblem(
                "auth.signature_algorithm",
                "invalid_choice",
                f"signature_algorithm must be {SIGNATURE_ALGORITHM}",
            )
        )
    for flag in ("regenerate_signature_secret", "regenerate_bearer_token"):
        if flag in auth and not isinstance(auth[flag], bool):
            problems.append(FieldProblem(f"auth.{flag}", "invalid_type", f"{flag} must be true or false"))
    if problems:
        raise InvalidRequest(problems)
    return dict(auth)


def _apply_auth(box: SecretBox, row: Webhook, auth: dict[str, Any]) -> dict[str, str]:
    """Sets the webhook's auth from ``auth`` (validated); returns the secrets it generated."""
    kind: str = auth.get("type") or row.auth_type or DEFAULT_AUTH_TYPE
    regenerate_signature = bool(auth.get("regenerate_signature_secret"))
    regenerate_bearer = bool(auth.get("regenerate_bearer_token"))
    problems = []
    if regenerate_signature and not uses_signature(kind):
        problems.append(
            FieldProblem(
                "auth.regenerate_signature_secret",
                "not_applicable",
                f"auth.type {kind} has no signature secret",
            )
        )
    if regenerate_bearer and not uses_bearer(kind):
        problems.append(
            FieldProblem(
                "auth.regenerate_bearer_token", "not_applicable", f"auth.type {kind} has no bearer token"
            )
        )
    if problems:
        raise InvalidRequest(problems)
    row.auth_type = kind
    generated: dict[str, str] = {}
    if uses_signature(kind):
        row.signature_algorithm = SIGNATURE_ALGORITHM
        if regenerate_signature or row.signature_secret_sealed is None:
            plain = new_signature_secret()
            row.signature_secret_sealed = box.seal(plain.encode(), signature_context(row.id))
            row.signature_secret_hint = plain[-HINT_LENGTH:]
            generated["signature_secret_plain"] = plain
    else:
        row.signature_algorithm = row.signature_secret_sealed = row.signature_secret_hint = None
    if uses_bearer(kind):
        if regenerate_bearer or row.bearer_token_sealed is None:
            plain = new_bearer_token()
            row.bearer_token_sealed = box.seal(plain.encode(), bearer_context(row.id))
            row.bearer_token_hint = plain[-HINT_LENGTH:]
            generated["bearer_token_plain"] = plain
    else:
        row.bearer_token_sealed = row.bearer_token_hint = None
    return generated


# --- reads ------------------------------------------------------------------------------------------


def list_statement(account_id: str, status: str | None) -> Select[Any]:
    """The account's webhooks, of one status (``deleted`` included) or, by default, all but deleted."""
    stmt = select(Webhook).where(Webhook.account_id == account_id)
    if status is None:
        return stmt.where(Webhook.status != "deleted")
    return stmt.where(Webhook.status == status)


async def get_webhook(
    session: AsyncSession, account_id: str, webhook_id: str, *, for_update: bool = False
) -> Webhook:
    """A webhook of the account that is not deleted (else 404, as for another account's)."""
    stmt = select(Webhook).where(
        Webhook.id == webhook_id, Webhook.account_id == account_id, Webhook.status != "deleted"
    )
    if for_update:
        stmt = versions.for_update(stmt)
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(WHAT)
    return row


# --- changes ----------------------------------------------------------------------------------------


async def create_webhook(
    session: AsyncSession,
    box: SecretBox,
    account_id: str,
    body: Mapping[str, Any],
    *,
    allow_private: bool,
) -> Saved:
    """``body`` is the create input (name, url, auth, events required; the rest optional)."""
    now = now_ms()
    status = body.get("status") or "active"
    _check_status(status)
    row = Webhook(
        id=ids.ulid(ID_PREFIX, now),
        account_id=account_id,
        name=body["name"],
        description=body.get("description"),
        url=webhook_rules.url(body.get("url"), allow_private=allow_private),
        status=status,
        status_at=now,
        auth_type=DEFAULT_AUTH_TYPE,
        events=webhook_rules.event_types(body.get("events")),
        subjects=webhook_rules.subjects(body.get("subjects")),
        retry=webhook_rules.retry(body.get("retry")),
        circuit_breaker=webhook_rules.circuit_breaker(body.get("circuit_breaker")),
        consecutive_failures=0,
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    generated = _apply_auth(box, row, _auth_input(body.get("auth"), _CREATE_AUTH_KEYS))
    session.add(row)
    await session.flush()
    await _emit(session, "webhook.created", row)
    return Saved(row, generated)


def _check_status(status: Any) -> None:
    if status not in SETTABLE_STATUSES:
        raise InvalidRequest(
            [
                FieldProblem(
                    "status", "invalid_choice", f"status must be one of: {', '.join(SETTABLE_STATUSES)}"
                )
            ]
        )


async def update_webhook(
    session: AsyncSession,
    box: SecretBox,
    account_id: str,
    webhook_id: str,
    changes: Mapping[str, Any],
    if_match: str | None,
    *,
    allow_private: bool,
) -> Saved:
    """PATCH: only the fields present change; ``retry``/``circuit_breaker`` merge over the current
    values (null: back to the defaults); ``subjects: null`` or ``[]`` subscribes to every subject."""
    row = await get_webhook(session, account_id, webhook_id, for_update=True)
    await versions.claim(session, row, WHAT, if_match)
    status_before = row.status
    for name in ("name", "url", "events", "auth"):
        if name in changes and changes[name] is None:
            raise InvalidRequest([FieldProblem(name, "required", f"{name} cannot be null")])
    if "name" in changes:
        row.name = changes["name"]
    if "description" in changes:
        row.description = changes["description"]
    if "url" in changes:
        row.url = webhook_rules.url(changes["url"], allow_private=allow_private)
    if "events" in changes:
        row.events = webhook_rules.event_types(changes["events"])
    if "subjects" in changes:
        row.subjects = webhook_rules.subjects(changes["subjects"])
    if "retry" in changes:
        current = row.retry if changes["retry"] is not None else None
        row.retry = webhook_rules.retry(changes["retry"], current)
    if "circuit_breaker" in changes:
        current = row.circuit_breaker if changes["circuit_breaker"] is not None else None
        row.circuit_breaker = webhook_rules.circuit_breaker(changes["circuit_breaker"], current)
    if "metadata" in changes:
        row.metadata_ = changes["metadata"] or {}
    generated: dict[str, str] = {}
    if "auth" in changes:
        generated = _apply_auth(box, row, _auth_input(changes["auth"], _UPDATE_AUTH_KEYS))
    if changes.get("status") is not None:
        _check_status(changes["status"])
        _transition(row, changes["status"], changes.get("status_reason"), changes.get("status_by"))
    else:
        for name in ("status_reason", "status_by"):
            if name in changes:
                setattr(row, name, changes[name])
    await session.flush()
    await _emit(session, _status_event(status_before, row.status), row)
    return Saved(row, generated)


def _transition(row: Webhook, target: str, reason: str | None, by: str | None) -> None:
    if target == row.status:
        return
    if target == "active":
        # Resumed by the account: the circuit breaker starts over.
        row.consecutive_failures = 0
        row.probe_at = None
    row.status = target
    row.status_at = now_ms()
    row.status_reason = reason
    row.status_by = by


def _status_event(before: str, after: str) -> str:
    if before != after and after == "disabled":
        return "webhook.paused"
    if before != after and after == "active":
        return "webhook.resumed"
    return "webhook.updated"


async def delete_webhook(
    session: AsyncSession, account_id: str, webhook_id: str, if_match: str | None
) -> None:
    """Soft delete: the webhook becomes ``deleted`` and every delivery it was still owed fails."""
    row = await get_webhook(session, account_id, webhook_id, for_update=True)
    await versions.claim(session, row, WHAT, if_match)
    now = now_ms()
    row.status = "deleted"
    row.status_at = now
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == row.id, WebhookDelivery.status.in_(OWED))
        .values(
            status="failed",
            last_error="webhook deleted",
            next_attempt_at=None,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await _emit(session, "webhook.deleted", row)


async def _emit(session: AsyncSession, kind: str, row: Webhook) -> None:
    # The public view, not the row: its sealed secrets have no place in an event.
    await events.emit_for(session, kind, row, "webhook", data=describe(row), account_id=row.account_id)
