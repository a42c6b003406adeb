"""The ID of the request being served, for every log line written while serving it."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

HEADER = b"x-request-id"
# A client (or a proxy in front) may bring its own ID; only a short, plain one is kept, since it is
# echoed in a header and written into every log line of the request.
_ACCEPTED = re.compile(rb"[A-Za-z0-9._-]{1,128}")

current: ContextVar[str | None] = ContextVar("authpi_request_id", default=None)


def new() -> str:
    return secrets.token_hex(12)


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The incoming ``X-Request-Id`` when it is acceptable, else a fresh one."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if _ACCEPTED.fullmatch(value) else new()
    return new()
