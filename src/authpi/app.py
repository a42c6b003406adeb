"""The ASGI application: Core API under /v1, IdP API under /{issuer_id} (decision 1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from authpi import __version__, health, i18n
from authpi.availability import Availability
from authpi.http import api_docs, errors, middleware, unit_of_work
from authpi.http.routes import (
    accounts,
    api_keys,
    approvals,
    auth_methods,
    clients,
    events,
    invitations,
    issuers,
    me,
    notes,
    org_api_keys,
    organizations,
    sessions,
    sso,
    tokens,
    trusted_devices,
    users,
    verifiers,
    webhook_deliveries,
    webhooks,
)
from authpi.memory import freeze_startup_objects, tune_allocator
from authpi.observability import endpoint as metrics_endpoint
from authpi.observability import metrics
from authpi.observability.asgi import ObserveRequests
from authpi.oidc.app import create_idp_app
from authpi.oidc.errors import NO_STORE
from authpi.outbound import message_sender
from authpi.outbound.webhook_sender import WebhookSender
from authpi.request_limits import BodyLimit, client_gone
from authpi.runtime import Runtime
from authpi.services import events as event_log
from authpi.services import housekeeping
from authpi.settings import Settings, get_settings
from authpi.shutdown import AnswerCancelledRequests
from authpi.storage import invalidation
from authpi.storage.errors import is_transient
from authpi.storage.health import DatabaseHealth

log = logging.getLogger("authpi")
RELEASE_TIMEOUT_S = 5.0


async def _housekeeping(keeper: housekeeping.Housekeeper) -> None:
    """A housekeeping pass every interval in whichever process holds the lease; the first try
    comes at start, so a restart never skips one."""
    while True:
        try:
            await keeper.run_once()
        except Exception as exc:  # the loop must survive a transient database error
            if is_transient(exc):  # the outage itself is logged once, by the database health check
                log.warning("housekeeping pass skipped: the database is busy or unreachable")
            else:
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
            token = event_log.acting_for(event_log.end_user(_client_ip(scope), _user_agent(scope)))
            try:
                await self.idp(scope, receive, send)
            finally:
                event_log.done(token)
            return
        await self.core(scope, receive, send)


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _user_agent(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"user-agent":
            return bytes(value[:500]).decode("latin-1")
    return None


def _start_message_sender(runtime: Runtime, settings: Settings) -> message_sender.MessageSender | None:
    """The message sender when email or SMS is configured; what is not is said once at start."""
    for warning in message_sender.unconfigured_warnings(settings):
        log.warning(warning)
    if not message_sender.channels(settings):
        return None
    messenger = message_sender.MessageSender(runtime.sessions, runtime.secretbox, settings)
    messenger.start()
    return messenger


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
        i18n.preload()  # compile the catalogues now: no request waits for it, a broken one fails here
        freeze_startup_objects()
        runtime.machine_tokens.start()
        follower = invalidation.Follower(settings)
        follower.start()
        keeper = housekeeping.Housekeeper(runtime.sessions, runtime.secretbox, settings)
        task = asyncio.create_task(_housekeeping(keeper))
        sender = WebhookSender(runtime.sessions, runtime.secretbox, settings)
        app.state.webhook_sender = sender
        sender.start()
        messenger = _start_message_sender(runtime, settings)
        pools_task = (
            asyncio.create_task(metrics.publish_pools(runtime.pools)) if settings.metrics_enabled else None
        )
        try:
            yield
        finally:
            if pools_task is not None:
                pools_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pools_task
            await sender.stop()
            if messenger is not None:
                await messenger.stop()
            await _stop_housekeeping(task, keeper)
            await follower.stop()
            # After the requests in flight: every token they issued is written out.
            await runtime.machine_tokens.close()
            metrics.worker_exited()
            await runtime.close()

    app = FastAPI(
        title="AuthPI Server Core API",
        version=__version__,
        description="Management API of a self-hosted AuthPI Server.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own copy of Swagger UI (api_docs)
        redoc_url=None,
    )
    errors.install(app)
    middleware.install(app)
    for module in (
        me,
        accounts,
        api_keys,
        issuers,
        auth_methods,
        clients,
        users,
        verifiers,
        trusted_devices,
        sessions,
        tokens,
        events,
        notes,
        webhooks,
        webhook_deliveries,
        organizations,
        invitations,
        org_api_keys,
        sso,
        approvals,
    ):
        # Services never commit: a route outside the unit of work would lose its writes.
        assert all(isinstance(route, unit_of_work.UnitOfWork) for route in module.router.routes)
        app.include_router(module.router)
    api_docs.install(app)
    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(metrics_endpoint.router(settings))

    for part in (app, idp):
        part.add_exception_handler(ClientDisconnect, client_gone)
    # Outermost, the request ID, access log and request metrics, so that every answer carries the ID
    # and is counted (the 503s of shedding and of a request cut off at shutdown too); then the
    # in-flight cap and database-outage answers; then body limits: nothing below may buffer more
    # than the limit of its part.
    return ObserveRequests(
        AnswerCancelledRequests(
            Availability(BodyLimit(Dispatcher(app, idp), settings), settings, database_health)
        )
    )
