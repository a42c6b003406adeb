"""Pure ASGI middleware: JSON content-type enforcement and storing idempotent responses."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authpi.http.auth import IdempotentReplay
from authpi.http.errors import error_body
from authpi.http.text_input import TextInputMiddleware
from authpi.services import idempotency

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


class IdempotencyMiddleware:
    """Captures the response of a request that claimed an Idempotency-Key and stores it (2xx) or
    releases the key (anything else, including a crash of the handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PATCH"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        captured: dict[str, Any] = {"status": 500, "etag": None, "body": bytearray(), "stored": False}

        async def store() -> None:
            slot = state.get("idempotency")
            if captured["stored"] or not isinstance(slot, idempotency.Slot):
                return
            captured["stored"] = True
            runtime = scope["app"].state.runtime
            await idempotency.finish(
                runtime.sessions,
                runtime.secretbox,
                slot,
                captured["status"],
                captured["etag"],
                bytes(captured["body"]),
            )

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"etag":
                        captured["etag"] = value.decode("latin-1")
            elif message["type"] == "http.response.body" and "idempotency" in state:
                captured["body"].extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # Store before the client sees the end of the response, so a retry sent the
                    # moment it arrives already replays instead of meeting an in-flight key.
                    await store()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await store()


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
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(TextInputMiddleware)
    app.add_middleware(JsonOnlyMiddleware)
