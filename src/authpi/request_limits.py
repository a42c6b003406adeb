"""Request body limits, enforced before any application code buffers a body.

A declared ``Content-Length`` above the limit is refused at once, without reading a byte of the body.
A streamed (chunked) body is read here, chunk by chunk, and refused as soon as it passes the limit;
the application then gets the buffered body, so no route ever holds more than the limit. Each part of
the server answers ``413`` in its own envelope (decision 19 for the IdP API), with ``Connection:
close`` so the rest of an oversized upload is never read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authpi.http.errors import error_body
from authpi.i18n import _l
from authpi.oidc.errors import NO_STORE
from authpi.oidc.pages import plain_message
from authpi.settings import Settings

# Hosted pages post HTML forms: a person reads the answer, so it is a page, not JSON.
HOSTED_PAGES = frozenset(
    {"authorize", "login", "login/password", "signup", "consent", "select-account", "logout"}
)
_ISSUER_ID = re.compile(r"^i_[A-Za-z0-9]{1,62}$")
CLOSE = {"Connection": "close"}
log = logging.getLogger("authpi.requests")


class Part(Enum):
    """The parts of the server that answer errors in envelopes of their own."""

    CORE = "core"  # Core API error envelope (A.10)
    PROTOCOL = "protocol"  # IdP API: OAuth JSON errors (decision 19)
    PAGES = "pages"  # IdP hosted pages: an HTML error page


def part_of(path: str) -> Part:
    if not path.startswith("/i_"):
        return Part.CORE
    endpoint = path.split("/", 2)[2] if path.count("/") >= 2 else ""
    return Part.PAGES if endpoint.rstrip("/") in HOSTED_PAGES else Part.PROTOCOL


def page_issuer_id(scope: Scope) -> str:
    """The issuer whose stylesheet an error page links (anything that is not an issuer ID gets none)."""
    issuer_id: str = scope["path"].split("/", 2)[1]
    return issuer_id if _ISSUER_ID.match(issuer_id) else "i_unknown"


def accept_language(scope: Scope) -> str | None:
    """The request's ``Accept-Language``, for the language of an error page given from the scope."""
    for name, value in scope.get("headers") or ():
        if name == b"accept-language":
            return str(value.decode("latin-1"))
    return None


def _describe(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes"


def core_too_large(scope: Scope, limit: int) -> Response:
    body = error_body(413, "payload_too_large", _describe(limit), retryable=False)
    return Response(json.dumps(body), 413, headers=CLOSE, media_type="application/json")


def oauth_too_large(scope: Scope, limit: int) -> Response:
    body = {"error": "invalid_request", "error_description": _describe(limit)}
    return JSONResponse(body, status_code=413, headers={**NO_STORE, **CLOSE})


def page_too_large(scope: Scope, limit: int) -> Response:
    response = plain_message(
        page_issuer_id(scope),
        _l("Request too large"),
        _l("The form sent more data than this page accepts. Go back and try again."),
        413,
        accept_language(scope),
    )
    response.headers.update(CLOSE)
    return response


async def client_gone(request: Request, exc: Exception) -> Response:
    """A client that hangs up before sending its whole body (``ClientDisconnect``, raised wherever
    a route reads the body) is nothing to report: nobody is left to answer, so this goes nowhere."""
    log.debug("client went away before sending the body of %s %s", request.method, request.url.path)
    return Response(status_code=400, headers=CLOSE)


@dataclass(frozen=True)
class BodyRule:
    """The largest body a part of the server accepts, and how that part says "too large"."""

    limit: int
    refuse: Callable[[Scope, int], Response]


class BodyLimit:
    """Pure ASGI layer in front of both applications (Core API and IdP API)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.rules = {
            Part.CORE: BodyRule(settings.max_body_bytes, core_too_large),
            Part.PROTOCOL: BodyRule(settings.max_form_bytes, oauth_too_large),
            Part.PAGES: BodyRule(settings.max_form_bytes, page_too_large),
        }

    def rule(self, path: str) -> BodyRule:
        return self.rules[part_of(path)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        streamed = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = max(declared or 0, int(value))
            elif name == b"transfer-encoding":
                streamed = True
        if not streamed and not declared:
            await self.app(scope, receive, send)  # no body
            return
        rule = self.rule(scope["path"])
        if declared is not None and declared > rule.limit:
            await rule.refuse(scope, rule.limit)(scope, receive, send)
            return
        if not streamed:
            # The server delivers exactly the declared length, which is within the limit.
            await self.app(scope, receive, send)
            return
        body = await self._read_streamed(receive, rule.limit)
        if body is None:
            await rule.refuse(scope, rule.limit)(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _read_streamed(receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it passes ``limit`` (or the client goes away)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the server's."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
