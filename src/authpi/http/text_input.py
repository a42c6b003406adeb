"""Rejects, as ``400 invalid_request``, input that parses but cannot be stored or echoed faithfully.

PostgreSQL refuses the NUL character in text and JSONB, neither database driver can encode an unpaired
UTF-16 surrogate, and JSON has no Infinity or NaN (Python's parser accepts ``1e400``, ``NaN`` and
``Infinity``). Left alone, each reaches the database as a 500, or comes back changed (as ``null``).
Checking once here keeps every route and backend consistent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from authpi.http.errors import error_body
from authpi.request_limits import replay_body

_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Far above any real resource, well below the response serializer's own limit (about 255).
MAX_DEPTH = 64


class BadValue(ValueError):
    """A JSON number that is not finite."""


class TooDeep(ValueError):
    """Arrays and objects nested more than MAX_DEPTH levels."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadValue(text)
    return value


def _non_finite(text: str) -> float:
    raise BadValue(text)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True


def _first_unstorable(value: Any, path: str, depth: int = 0) -> str | None:
    """The JSON path of the first key or string that cannot be stored, if any."""
    if depth > MAX_DEPTH:
        raise TooDeep(path)
    if isinstance(value, str):
        return None if _storable(value) else path or "body"
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if not _storable(key):
                return path or "body"
            found = _first_unstorable(item, child, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


def body_problem(body: bytes) -> tuple[str, str] | None:
    """``(field, message)`` when a JSON body holds unstorable text, a non-finite number, or is nested
    too deeply to be stored and returned."""
    try:
        parsed = json.loads(body, parse_float=_finite, parse_constant=_non_finite)
        field = _first_unstorable(parsed, "")
    except BadValue:
        return "body", "Numbers must be finite (JSON has no Infinity or NaN)"
    except (TooDeep, RecursionError):
        return "body", f"The JSON body is nested more than {MAX_DEPTH} levels deep"
    except ValueError:
        return None  # malformed JSON: the route's own parser answers it
    if field is None:
        return None
    return field, "Text may not contain NUL characters or unpaired UTF-16 surrogates"


class TextInputMiddleware:
    """NUL in the URL is refused on every route; Core API JSON bodies are checked with
    :func:`body_problem`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        core = scope["path"].startswith("/v1/")
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await self._reject(scope, receive, send, core, "url", "The URL may not contain NUL characters")
            return
        if not core or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = body_problem(body) if body else None
        if problem is not None:
            await self._reject(scope, receive, send, core, *problem)
            return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _reject(
        scope: Scope, receive: Receive, send: Send, core: bool, field: str, message: str
    ) -> None:
        if core:
            content = error_body(
                400,
                "invalid_request",
                message,
                fields=[{"field": field, "code": "invalid", "message": message}],
            )
        else:  # the IdP API's OAuth-style error body (decision 19)
            content = {"error": "invalid_request", "error_description": message}
        await JSONResponse(content, status_code=400)(scope, receive, send)
