from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from authpi.http.schemas.common import StrictInput


class IntrospectIn(StrictInput):
    token: str = Field(min_length=1, max_length=8192)
    token_type_hint: Literal["access_token", "refresh_token", "api_key"] | None = None
    ip: str | None = Field(default=None, max_length=64, description="Client IP to check against an allowlist")


class IntrospectOut(StrictInput):
    """RFC 7662 fields plus ``reason`` when inactive; other claims pass through."""

    model_config = ConfigDict(extra="allow")

    active: bool
    reason: str | None = None
