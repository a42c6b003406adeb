"""The ASGI application: Core API under /v1, IdP API under /{issuer_id} (decision 1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from authpi import __version__
from authpi.http import errors, middleware
from authpi.http.routes import accounts, api_keys, auth_methods, clients, issuers, me, sessions, tokens, users
from authpi.oidc import errors as oauth_errors
from authpi.oidc.routes import authorize, discovery, hosted, logout, revocation, token, userinfo
from authpi.runtime import Runtime
from authpi.services import housekeeping
from authpi.settings import Settings, get_settings

log = logging.getLogger("authpi")
MAINTENANCE_INTERVAL_S = 3600


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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
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
    oauth_errors.install(app)
    middleware.install(app)
    for module in (me, accounts, api_keys, issuers, auth_methods, clients, users, sessions, tokens):
        app.include_router(module.router)

    for module in (discovery, authorize, hosted, token, userinfo, revocation, logout):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    return app
