"""One transaction per Core API request, committed before the response leaves.

Services flush their changes and never commit. The route builds its whole response (status, ETag,
body) inside the transaction; then, written once here for every route:

* a request that claimed an ``Idempotency-Key`` records its 2xx response (sealed, bound to the
  caller) in that same transaction, so one commit makes the change and its replay durable together:
  after a crash the retry either replays the response or finds that nothing happened;
* the transaction commits, and only then is the response sent;
* a request that fails (an error, or a response other than 2xx) rolls back and releases its key.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.http.auth import runtime
from authpi.services import idempotency

log = logging.getLogger("authpi.http")

# With AUTHPI_FAULT_INJECTION on (tests only), a request carrying this header and value kills its
# worker right after its commit, before it answers: the crash a retry must survive.
FAULT_HEADER = "x-fault-injection"
CRASH_AFTER_COMMIT = "crash-after-commit"


class UnitOfWork(APIRoute):
    """The route class of every Core API route (see ``router``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handle(request)
            except Exception:
                await _abandon(request)
                raise
            try:
                await _complete(request, response)
            except Exception:
                await _abandon(request)
                raise
            return response

        return run


def router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose routes run as one unit of work each."""
    return APIRouter(route_class=UnitOfWork, **kwargs)


def _session(request: Request) -> AsyncSession | None:
    session: AsyncSession | None = getattr(request.state, "db_session", None)
    return session


def _slot(request: Request) -> idempotency.Slot | None:
    slot: idempotency.Slot | None = getattr(request.state, "idempotency", None)
    return slot


async def _complete(request: Request, response: Response) -> None:
    session = _session(request)
    if session is None:
        return
    slot = _slot(request)
    succeeded = 200 <= response.status_code < 300
    if not succeeded:
        await session.rollback()
    if slot is not None:
        if succeeded:
            etag = response.headers.get("etag")
            body = bytes(response.body)
            await idempotency.store(
                session, runtime(request).secretbox, slot, response.status_code, etag, body
            )
        else:
            await idempotency.release(session, slot)
    await session.commit()
    _maybe_crash(request)


async def _abandon(request: Request) -> None:
    """Roll the request back and give its Idempotency-Key back. If even that fails (the database is
    gone), the key's lease runs out on its own."""
    session = _session(request)
    if session is None:
        return
    slot = _slot(request)
    try:
        await session.rollback()
        if slot is not None:
            await idempotency.release(session, slot)
            await session.commit()
    except Exception:
        log.warning("could not release an Idempotency-Key after a failed request", exc_info=True)


def _maybe_crash(request: Request) -> None:
    if runtime(request).settings.fault_injection and request.headers.get(FAULT_HEADER) == CRASH_AFTER_COMMIT:
        os.kill(os.getpid(), signal.SIGKILL)
