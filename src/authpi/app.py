"""The ASGI application: Core API under /v1, IdP API under /{issuer_id} (decision 1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from authpi import __version__
from authpi.availability import Availability
from authpi.http import errors, middleware
from authpi.http.routes import accounts, api_keys, auth_methods, clients, issuers, me, sessions, tokens, users
from authpi.memory import freeze_startup_objects, tune_allocator
from authpi.oidc.app import create_idp_app
from authpi.oidc.errors import NO_STORE
from authpi.request_limits import BodyLimit
from authpi.runtime import Runtime
from authpi.services import housekeeping
from authpi.settings import Settings, get_settings
from authpi.storage.health import DatabaseHealth

log = logging.getLogger("authpi")
MAINTENANCE_INTERVAL_S = 3600
READY_TIMEOUT_S = 2.0


async def _maintenance(runtime: Runtime) -> None:
    """Hourly housekeeping (expired state, soft-deleted issuers, monthly key rotation)."""
    while True:
        try:
            async with runtime.sessions() as session:
                if await housekeeping.take_lease(session, MAINTENANCE_INTERVAL_S - 60):
                    await housekeeping.run(session, runtime.secretbox, runtime.settings.purge_after)
        except Exception:  # the loop must survive a transient database error
            log.exception("maintenance pass failed")
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)


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
    database_health = DatabaseHealth()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_allocator()
        runtime = Runtime.build(settings, database_health)
        app.state.runtime = runtime
        idp.state.runtime = runtime
        freeze_startup_objects()
        task = asyncio.create_task(_maintenance(runtime))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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

    @app.get("/readyz", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        """Ready when the database answers within a short timeout (503 otherwise)."""
        runtime: Runtime = request.app.state.runtime
        if await runtime.database_ready(READY_TIMEOUT_S):
            return JSONResponse({"status": "ok", "database": "ok"})
        body = {"status": "unavailable", "database": "unreachable"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    # The in-flight cap comes first, then body limits: nothing below may buffer more than the
    # limit of its part.
    return Availability(BodyLimit(Dispatcher(app, idp), settings), settings, database_health)
