"""The outermost ASGI layer: a request ID, the access log line and the request metrics.

It sits above everything else (body limits, dispatcher, both applications), so every answer, 413s
and errors included, carries ``X-Request-Id`` and is counted once.
"""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authpi.http.errors import error_body
from authpi.observability import request_id
from authpi.observability.metrics import RequestMetrics

access_log = logging.getLogger("authpi.access")
log = logging.getLogger("authpi.errors")

MAX_LOGGED_PATH = 256
_UNSAFE = re.compile(r"[^\x21-\x7e]")
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s)
NO_RESPONSE = 499  # the application sent nothing (the client went away first), as nginx counts it


def loggable_path(scope: Scope) -> str:
    """The path as the client sent it (still percent-encoded, so a decoded line break cannot forge a
    log line), without the query string, which can carry codes and tokens."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else scope.get("path", "")
    path = path.split("?", 1)[0][:MAX_LOGGED_PATH]
    return path if path.isascii() and path.isprintable() else _UNSAFE.sub("?", path)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class ObserveRequests:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id.from_headers(scope["headers"])
        token = request_id.current.set(rid)
        header = (request_id.HEADER, rid.encode("ascii"))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status == 0:
                status = 500
                await self._answer_unhandled(send_with_id)
            # Otherwise the application's own error handler has answered and logged the error with
            # the reference it gave the client; re-raising would only log the traceback again.
        finally:
            elapsed = time.perf_counter() - started
            status = status or NO_RESPONSE
            self.metrics.observe(route_template(scope), scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                self._log_access(scope, status, elapsed)
            request_id.current.reset(token)

    @staticmethod
    async def _answer_unhandled(send: Send) -> None:
        """An error outside both applications (no handler of theirs saw it)."""
        body = error_body(500, "server_error", "An unexpected error occurred", retryable=False)
        log.exception("unhandled error %s", body["reference"], extra={"reference": body["reference"]})
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _log_access(scope: Scope, status: int, elapsed: float) -> None:
        client = scope.get("client")
        client_ip = client[0] if client else None
        path = loggable_path(scope)
        duration_ms = round(elapsed * 1000, 2)
        access_log.info(
            "%s %s %s %d %.2fms",
            client_ip or "-",
            scope["method"],
            path,
            status,
            duration_ms,
            extra={
                "method": scope["method"],
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "client_ip": client_ip,
            },
        )
