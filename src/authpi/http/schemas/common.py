from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Metadata = dict[str, Any]
# 9999-12-31T23:59:59.999Z: input timestamps (ms) stay within the database's 64-bit integers.
MAX_TIMESTAMP_MS = 253_402_300_799_999


class FieldErrorOut(BaseModel):
    field: str
    code: str
    message: str


class ErrorOut(BaseModel):
    error: str
    error_description: str
    reference: str | None = None
    retryable: bool
    retry_after: int | None = None
    fields: list[FieldErrorOut] | None = None
    current_etag: str | None = None
    currentETag: str | None = None


class StrictInput(BaseModel):
    """Request bodies reject unknown fields so typos surface as errors instead of silent no-ops."""

    model_config = ConfigDict(extra="forbid")


class ReasonInput(StrictInput):
    reason: str | None = Field(default=None, max_length=1000)
    by: str | None = Field(default=None, max_length=200)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed request or invalid fields"),
    401: _error("Missing or invalid credentials"),
    403: _error("The API key lacks the required scope"),
    404: _error("No such resource"),
    409: _error("Conflict with the current state"),
    412: _error("If-Match did not match the current ETag"),
    415: _error("Request body is not JSON"),
    422: _error("Semantically invalid request"),
    429: _error("Rate limited"),
}
