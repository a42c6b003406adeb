"""The ASGI application: Core API under /v1, IdP API under /{issuer_id} (decision 1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from authpi import __version__
from authpi.http import errors, middleware
from authpi.http.routes import accounts, api_keys, auth_methods, clients, issuers, me, sessions, tokens, users
from authpi.memory import freeze_startup_objects, tune_allocator
from authpi.oidc.app import create_idp_app
from authpi.oidc.errors import NO_STORE
from authpi.request_limits import BodyLimit
from authpi.runtime import Runtime
from authpi.services import housekeeping
from authpi.settings import Settings, get_settings

log = logging.getLogger("authpi")
RELEASE_TIMEOUT_S = 5.0


async def _housekeeping(keeper: housekeeping.Housekeeper) -> None:
    """A housekeeping pass every interval in whichever process holds the lease; the first try
    comes at start, so a restart never skips one."""
    while True:
        try:
            await keeper.run_once()
        except Exception:  # the loop must survive a transient database error
            log.exception("housekeeping pass failed")
        await asyncio.sleep(keeper.interval)


async def _stop_housekeeping(task: asyncio.Task[None], keeper: housekeeping.Housekeeper) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:  # hand the lease on, so the next process to start runs a pass at once
        await asyncio.wait_for(keeper.release(), RELEASE_TIMEOUT_S)
    except Exception:  # it runs out by itself within two intervals
        log.warning("could not release the housekeeping lease", exc_info=True)


class Dispatcher:
    """Sends /{issuer_id}/... (issuer IDs start with ``i_``) to the IdP app, the rest to the Core API."""

    def __init__(self, core: FastAPI, idp: ASGIApp) -> None:
        self.core = core
        self.idp = idp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/i_"):
            if "\x00" in path or b"%00" in scope.get("query_string", b""):
                # No parameter or issuer ID has a NUL in it, and PostgreSQL refuses one as a query
                # parameter. This covers every query value the IdP API reads (the Core API's own
                # TextInputMiddleware does the same); forms and Basic credentials are checked where
                # they are decoded (oidc.context).
                body = {"error": "invalid_request", "error_description": "The URL must not contain NUL"}
                await JSONResponse(body, status_code=400, headers=NO_STORE)(scope, receive, send)
                return
            await self.idp(scope, receive, send)
            return
        await self.core(scope, receive, send)


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or get_settings()
    idp = create_idp_app()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_allocator()
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
        idp.state.runtime = runtime
        freeze_startup_objects()
        keeper = housekeeping.Housekeeper(runtime.sessions, runtime.secretbox, settings)
        task = asyncio.create_task(_housekeeping(keeper))
        try:
            yield
        finally:
            await _stop_housekeeping(task, keeper)
            await runtime.close()

    app = FastAPI(
        title="AuthPI Server Core API",
        version=__version__,
        description="Management API of a self-hosted AuthPI Server.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    middleware.install(app)
    for module in (me, accounts, api_keys, issuers, auth_methods, clients, users, sessions, tokens):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    # Body limits come first: nothing below may buffer more than the limit of its part.
    return BodyLimit(Dispatcher(app, idp), settings)
