"""Requests still running when a graceful shutdown runs out of time.

After SIGTERM uvicorn stops accepting connections and waits up to ``AUTHPI_SHUTDOWN_TIMEOUT`` seconds
for requests in flight (a slow upload could otherwise hold the process for as long as its client
likes), then cancels the ones left. Left alone, that cancellation reaches uvicorn as an error: a
traceback in the log and a bare ``500``. This layer answers such a request ``503`` with
``Retry-After`` instead, so the client retries (against the restarted server or another one), and
the log only says how many requests were cut off.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authpi.http.errors import error_body

_DESCRIPTION = "The server is restarting; retry shortly"


class AnswerCancelledRequests:
    """Outermost ASGI layer: a cancelled request gets a ``503`` (when no answer had begun yet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answering = False

        async def tracked(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # Only uvicorn cancels a request's task, and only when the shutdown timeout ends: the
            # task ends here, answered, instead of propagating the cancellation as an error.
            if not answering:
                await _unavailable(send)


async def _unavailable(send: Send) -> None:
    # The Core error envelope; its error and error_description also read as an OAuth error.
    body = json.dumps(error_body(503, "temporarily_unavailable", _DESCRIPTION, retryable=True)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
