from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.services import webhooks
from authpi.services.webhook_rules import MAX_EVENTS, MAX_SUBJECTS, MAX_URL_LENGTH
from authpi.storage.tables.webhooks import Webhook

WebhookStatus = Literal["active", "disabled", "failing", "deleted"]
_AUTH_DOC = (
    "`type`: none | bearer | signature (default) | bearer+signature; `signature_algorithm`: hmac-sha256."
)
_REGENERATE_DOC = (
    " On update also `regenerate_signature_secret` / `regenerate_bearer_token` (true: a new secret,"
    " returned once in this response)."
)


class WebhookCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    # Bounds here only cap the input; the rules (scheme, addresses, catalogue names) answer per field.
    url: str = Field(max_length=MAX_URL_LENGTH + 1)
    status: Literal["active", "disabled"] | None = None
    auth: dict[str, Any] = Field(description=_AUTH_DOC)
    events: list[Any] = Field(max_length=MAX_EVENTS + 1, description="Exact event type names")
    subjects: list[Any] | None = Field(
        default=None, max_length=MAX_SUBJECTS + 1, description="`{type, id}` filters; none: every subject"
    )
    retry: dict[str, Any] | None = Field(
        default=None,
        description="max_attempts (1-30, 10), initial_delay_seconds (1-3600, 5), max_delay_seconds",
    )
    circuit_breaker: dict[str, Any] | None = Field(
        default=None,
        description="enabled (true), failure_threshold (1-1000, 20), probe_interval_seconds (5-86400, 60)",
    )
    metadata: Metadata | None = None


class WebhookUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH + 1)
    status: Literal["active", "disabled"] | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)
    auth: dict[str, Any] | None = Field(default=None, description=_AUTH_DOC + _REGENERATE_DOC)
    events: list[Any] | None = Field(default=None, max_length=MAX_EVENTS + 1)
    subjects: list[Any] | None = Field(default=None, max_length=MAX_SUBJECTS + 1)
    retry: dict[str, Any] | None = None
    circuit_breaker: dict[str, Any] | None = None
    metadata: Metadata | None = None


class WebhookOut(BaseModel):
    id: str
    account_id: str
    name: str
    description: str | None
    url: str
    status: str
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    auth: dict[str, Any]
    events: list[str]
    subjects: list[dict[str, Any]] | None
    retry: dict[str, Any] | None
    circuit_breaker: dict[str, Any] | None
    metadata: Metadata | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, row: Webhook) -> WebhookOut:
        return cls(**webhooks.describe(row))


class WebhookWithSecretsOut(WebhookOut):
    """Create and update answers: the secrets this request generated, in plain, at the top level
    and inside ``auth`` (only in this response; afterwards only their hints)."""

    signature_secret_plain: str | None = None
    bearer_token_plain: str | None = None

    @staticmethod
    def payload(row: Webhook, generated: dict[str, str]) -> dict[str, Any]:
        """The response body: keys for secrets appear only when one was generated."""
        body = WebhookOut.of(row).model_dump(mode="json")
        body["auth"].update(generated)
        body.update(generated)
        return body


class WebhookListItemOut(BaseModel):
    id: str
    account_id: str
    status: str
    name: str
    description: str | None
    url: str
    auth_type: str
    events: list[str]
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, row: Webhook) -> WebhookListItemOut:
        return cls(
            id=row.id,
            account_id=row.account_id,
            status=row.status,
            name=row.name,
            description=row.description,
            url=row.url,
            auth_type=row.auth_type,
            events=list(row.events),
            status_at=row.status_at,
            status_reason=row.status_reason,
            status_by=row.status_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
