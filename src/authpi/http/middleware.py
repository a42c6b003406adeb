"""Pure ASGI middleware: JSON content-type enforcement; the replay of stored idempotent responses."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from authpi.http.auth import IdempotentReplay
from authpi.http.errors import error_body
from authpi.http.text_input import TextInputMiddleware

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonOnlyMiddleware:
    """Core API bodies must be JSON: a body of any other type is 415 (bodyless POSTs are fine)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"].encode() in _BODY_METHODS:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0")
            has_body = b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if has_body and not _is_json(content_type):
                body = error_body(415, "invalid_content_type", "Request bodies must be application/json")
                await Response(json.dumps(body), 415, media_type="application/json")(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _replay(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    stored = exc.stored
    headers = {"Idempotent-Replayed": "true"}
    if stored.etag:
        headers["ETag"] = stored.etag
    if not stored.body:
        return Response(status_code=stored.status_code, headers=headers)
    return Response(stored.body, stored.status_code, headers=headers, media_type="application/json")


def install(app: FastAPI) -> None:
    app.add_exception_handler(IdempotentReplay, _replay)
    app.add_middleware(TextInputMiddleware)
    app.add_middleware(JsonOnlyMiddleware)
