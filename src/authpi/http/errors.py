"""The Core API error envelope (A.10), produced for every failure in one place."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from authpi.services.errors import PreconditionFailed, RateLimited, ServiceError
from authpi.services.idempotency import InFlight
from authpi.storage.errors import is_transient

log = logging.getLogger("authpi.errors")
# Every 401 names the scheme that would work (RFC 9110 §15.5.2): API keys as HTTP Basic.
BASIC_CHALLENGE = 'Basic realm="AuthPI"'

_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "invalid_content_type",
    422: "invalid_request",
    429: "rate_limited",
}


def error_body(
    status: int,
    error: str,
    description: str,
    *,
    fields: list[dict[str, str]] | None = None,
    retryable: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error,
        "error_description": description,
        "reference": "ref_" + secrets.token_hex(8),
        "retryable": status in (408, 429, 502, 503, 504) if retryable is None else retryable,
    }
    if fields:
        body["fields"] = fields
    if extra:
        body.update(extra)
    return body


def error_response(
    status: int,
    error: str,
    description: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> JSONResponse:
    if status == 401:
        headers = {"WWW-Authenticate": BASIC_CHALLENGE, **(headers or {})}
    return JSONResponse(error_body(status, error, description, **kwargs), status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # Drop pydantic's union/tag markers so the field reads like the JSON path the client sent.
    parts = [p for p in parts if not p.startswith(("function-", "tagged-union")) and "[" not in p]
    return ".".join(parts) or "body"


_PYDANTIC_CODES = {"missing": "required", "extra_forbidden": "unknown_field", "json_invalid": "invalid_json"}


def validation_fields(errors: list[Any]) -> list[dict[str, str]]:
    fields = []
    for err in errors:
        code = _PYDANTIC_CODES.get(err.get("type", ""), err.get("type", "invalid"))
        fields.append(
            {"field": _field_name(tuple(err.get("loc", ()))), "code": code, "message": err.get("msg", "")}
        )
    return fields


async def _service_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, PreconditionFailed):
        extra = {"current_etag": exc.current_etag, "currentETag": exc.current_etag}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        extra = {"retry_after": exc.retry_after}
    if isinstance(exc, InFlight):
        headers["Retry-After"] = str(exc.retry_after)
    fields = [{"field": f.field, "code": f.code, "message": f.message} for f in exc.fields]
    return error_response(
        exc.status,
        exc.code,
        exc.description,
        headers=headers,
        fields=fields or None,
        retryable=exc.retryable,
        extra=extra,
    )


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "invalid_request", "The request body is not valid JSON")
    return error_response(
        400, "invalid_request", "The request has invalid or missing fields", fields=validation_fields(errors)
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, "invalid_request" if status < 500 else "server_error")
    description = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if status == 404 and description == "Not Found":
        description = "No such route"
    return error_response(status, code, description, headers=dict(exc.headers or {}))


async def _unhandled(_: Request, exc: Exception) -> Response:
    if is_transient(exc):
        # A busy or unreachable database: authpi.availability answers 503 for every part of the
        # server in one place, and without logging a traceback per request.
        raise exc
    body = error_body(500, "server_error", "An unexpected error occurred", retryable=False)
    log.error("unhandled error %s", body["reference"], exc_info=exc, extra={"reference": body["reference"]})
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
