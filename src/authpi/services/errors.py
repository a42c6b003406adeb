"""Errors the services raise; the HTTP layer maps each to the Core API error envelope."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    code: str
    message: str


class ServiceError(Exception):
    status = 400
    code = "invalid_request"
    retryable = False

    def __init__(self, description: str, *, fields: list[FieldProblem] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.fields = fields or []


class InvalidInput(ServiceError):
    """Well-formed but semantically wrong input: 422 with per-field problems."""

    status = 422

    @classmethod
    def on(cls, field: str, code: str, message: str) -> InvalidInput:
        return cls(message, fields=[FieldProblem(field, code, message)])


class InvalidRequest(ServiceError):
    """Input the request itself gets wrong (unknown names, malformed values): 400 ``invalid_request``
    with one entry per problem in ``fields``."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems[:5]), fields=problems)


class NotFound(ServiceError):
    status = 404
    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Forbidden(ServiceError):
    status = 403
    code = "insufficient_scope"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class PreconditionFailed(ServiceError):
    status = 412
    code = "precondition_failed"

    def __init__(self, what: str, current_etag: str) -> None:
        super().__init__(
            f"{what} has been modified since the provided ETag. Fetch the latest version and retry."
        )
        self.current_etag = current_etag


class ConcurrentChange(Conflict):
    """Another request changed the resource between this one reading and writing it."""

    retryable = True

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} was changed by another request at the same time; retry")


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    retryable = True

    def __init__(self, retry_after: int, *, first: bool = False) -> None:
        super().__init__("Too many requests; retry later.")
        self.retry_after = max(1, retry_after)
        # The first refusal of this caller in this window (worth recording once, not per request).
        self.first = first


def check_etag(what: str, if_match: str | None, current_etag: str) -> None:
    """Evaluate ``If-Match`` (strong comparison; ``*`` matches any existing resource)."""
    if if_match is None:
        return
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" in candidates or current_etag in candidates:
        return
    raise PreconditionFailed(what, current_etag)
