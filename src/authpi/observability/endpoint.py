"""``GET /metrics``: registered only when ``AUTHPI_METRICS_ENABLED``; with ``AUTHPI_METRICS_TOKEN``
it also needs ``Authorization: Bearer <token>``. The figures hold no secret, ID or raw path, but they
do tell how busy the server is and how many sign-ins fail, so keep the endpoint to the scraper."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from authpi.http.errors import error_body
from authpi.observability import metrics
from authpi.settings import Settings


def router(settings: Settings) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    @routes.get("/metrics")
    async def scrape(request: Request) -> Response:
        if expected is not None:
            presented = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(presented, expected):
                body = error_body(401, "unauthorized", "Send the metrics token as a Bearer token")
                return JSONResponse(body, 401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        runtime = request.app.state.runtime
        metrics.sample_pools(runtime.pools())
        # A multiprocess scrape reads every worker's files: off the event loop.
        payload = await run_in_threadpool(metrics.render)
        return Response(payload, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return routes
