"""Overload and database outages, answered once at the top of the app (a pure ASGI layer).

* **In-flight cap.** A worker serves at most ``AUTHPI_MAX_IN_FLIGHT`` requests at once; one more is
  answered ``503`` with ``Retry-After`` at once, before any of its body is read, instead of queueing
  behind the others. ``/healthz`` and ``/readyz`` are never refused, so an orchestrator can tell a
  busy worker from a dead one.
* **Transient database failures.** A request that fails because the database is busy (no pooled
  connection within ``AUTHPI_DATABASE_POOL_TIMEOUT``, a lock or statement timeout) or unreachable
  (``storage.errors``) is answered ``503`` with ``Retry-After`` in the envelope of the part of the
  server it asked (Core error envelope with ``retryable: true``, OAuth ``temporarily_unavailable``,
  or an error page for the hosted pages), without a traceback: both applications' last-resort
  handlers pass these failures up to here. Outages are logged by ``storage.health``; refusals for
  load are summed up in one warning per ``REPORT_INTERVAL_S``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authpi.http.errors import error_body
from authpi.i18n import _l
from authpi.oidc.errors import NO_STORE
from authpi.oidc.pages import plain_message
from authpi.request_limits import Part, accept_language, page_issuer_id, part_of
from authpi.settings import Settings
from authpi.storage.errors import is_transient, is_unavailable
from authpi.storage.health import DatabaseHealth

log = logging.getLogger("authpi.availability")
NEVER_REFUSED = frozenset({"/healthz", "/readyz"})
REPORT_INTERVAL_S = 10.0
BUSY_RETRY_AFTER_S = 1
OUTAGE_RETRY_AFTER_S = 5
BUSY = "The server is busy; retry shortly"
OUTAGE = "The service is temporarily unavailable; retry shortly"


def core_unavailable(scope: Scope, retry_after: int, description: str) -> Response:
    body = error_body(503, "temporarily_unavailable", description, retryable=True)
    body["retry_after"] = retry_after
    headers = {"Retry-After": str(retry_after)}
    return Response(json.dumps(body), 503, headers=headers, media_type="application/json")


def oauth_unavailable(scope: Scope, retry_after: int, description: str) -> Response:
    body = {"error": "temporarily_unavailable", "error_description": description}
    return JSONResponse(body, status_code=503, headers={**NO_STORE, "Retry-After": str(retry_after)})


def page_unavailable(scope: Scope, retry_after: int, description: str) -> Response:
    text = _l("This page cannot be shown right now. Wait a moment, then try again.")
    heading = _l("Temporarily unavailable")
    response = plain_message(page_issuer_id(scope), heading, text, 503, accept_language(scope))
    response.headers["Retry-After"] = str(retry_after)
    return response


UNAVAILABLE: dict[Part, Callable[[Scope, int, str], Response]] = {
    Part.CORE: core_unavailable,
    Part.PROTOCOL: oauth_unavailable,
    Part.PAGES: page_unavailable,
}


class RefusalLog:
    """Requests refused for load, logged at most once per interval (the first one at once)."""

    def __init__(self, interval: float = REPORT_INTERVAL_S) -> None:
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.last_report = float("-inf")

    def record(self, reason: str) -> None:
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self.last_report < self.interval:
            return
        detail = ", ".join(f"{why}: {count}" for why, count in self.counts.most_common())
        log.warning("refused %d requests with 503 for load (%s)", self.counts.total(), detail)
        self.counts.clear()
        self.last_report = now


refusals = RefusalLog()


def refuse(scope: Scope, retry_after: int, description: str) -> Response:
    return UNAVAILABLE[part_of(scope["path"])](scope, retry_after, description)


def transient_failure(scope: Scope, exc: Exception, health: DatabaseHealth) -> Response:
    """The 503 for a request the database could not serve (``storage.errors.is_transient``)."""
    if is_unavailable(exc):
        health.failed(exc)  # a statement that lost its connection also opens the breaker
        health.count_refused()
        return refuse(scope, OUTAGE_RETRY_AFTER_S, OUTAGE)
    refusals.record("database busy or pool exhausted")
    return refuse(scope, BUSY_RETRY_AFTER_S, BUSY)


class Availability:
    def __init__(self, app: ASGIApp, settings: Settings, health: DatabaseHealth) -> None:
        self.app = app
        self.limit = settings.max_in_flight
        self.health = health
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_REFUSED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            refusals.record("in-flight cap")
            await refuse(scope, BUSY_RETRY_AFTER_S, BUSY)(scope, receive, send)
            return
        self.in_flight += 1
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started or not is_transient(exc):
                raise
            await transient_failure(scope, exc, self.health)(scope, receive, send)
        finally:
            self.in_flight -= 1
