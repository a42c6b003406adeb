from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from authpi.http.schemas.common import Metadata
from authpi.services.sessions import effective_status
from authpi.storage.tables.sessions import Session

SessionStatus = Literal["inactive", "active", "suspended", "revoked", "expired"]


class PublicSessionOut(BaseModel):
    """A session as the Core API shows it: effective status, never the cookie digest."""

    id: str
    user_id: str
    issuer_id: str
    type: str
    status: str
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    authentication: dict[str, Any] | None
    op_session_id: str | None
    device: dict[str, Any] | None
    location: dict[str, Any] | None
    origin: str | None
    ttl: int | None
    idle_timeout: int | None
    last_activity_at: int | None
    access_token_issued_at: int | None
    refresh_token_issued_at: int | None
    refresh_count: int | None
    compromised: bool | None
    compromised_at: int | None
    compromised_reason: str | None
    revoked_reason: str | None
    metadata: Metadata | None
    created_at: int
    updated_at: int | None
    expires_at: int | None
    revoked_at: int | None
    client: dict[str, Any] | None

    @classmethod
    def of(cls, row: Session, now: int | None = None) -> PublicSessionOut:
        return cls(
            id=row.id,
            user_id=row.user_id,
            issuer_id=row.issuer_id,
            type=row.type,
            status=effective_status(row, now),
            status_at=row.status_at,
            status_reason=row.status_reason,
            status_by=row.status_by,
            authentication=row.authentication,
            op_session_id=row.op_session_id,
            device=row.device,
            location=None,
            origin=row.origin,
            ttl=row.ttl,
            idle_timeout=row.idle_timeout,
            last_activity_at=row.last_activity_at,
            access_token_issued_at=row.access_token_issued_at,
            refresh_token_issued_at=row.refresh_token_issued_at,
            refresh_count=row.refresh_count,
            compromised=row.compromised,
            compromised_at=row.compromised_at,
            compromised_reason=row.compromised_reason,
            revoked_reason=row.revoked_reason,
            metadata=row.metadata_,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            client={"id": row.client_id} if row.client_id else None,
        )
