"""Prometheus metrics (``/metrics``, when ``AUTHPI_METRICS_ENABLED``).

With several workers, each process writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
(prepared by :mod:`authpi.observability.workers` before any worker imports this module) and a scrape,
whichever worker answers it, aggregates them all. Labels are bounded sets: route *templates*, never
raw paths; a known HTTP method or ``other``; the status code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUESTS = Counter(
    "authpi_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "authpi_http_request_duration_seconds",
    "Time from the request head to the end of the response, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOGINS = Counter("authpi_logins", "Password sign-in attempts on the hosted pages, by result.", ["result"])
# success; failure (wrong credentials, or an account that may not sign in); locked (refused unchecked)
LOGINS_BY_RESULT = {result: LOGINS.labels(result) for result in ("success", "failure", "locked")}
LOCKOUTS = Counter("authpi_lockouts", "Credentials locked after too many failed attempts.")
TOKENS = Counter("authpi_tokens_issued", "Token responses issued, by grant type.", ["grant_type"])
TOKENS_BY_GRANT = {
    grant: TOKENS.labels(grant) for grant in ("authorization_code", "refresh_token", "client_credentials")
}
EVENTS_DROPPED = Counter(
    "authpi_events_dropped",
    "Events not recorded because a worker's event buffer was full, by event type.",
    ["type"],
)
EVENTS_DROPPED_BY_TYPE = {kind: EVENTS_DROPPED.labels(kind) for kind in ("machine.token.issued",)}

# Gauges: each worker publishes its own pools; a scrape shows the sum over live workers.
POOL_SIZE = Gauge(
    "authpi_db_pool_size", "Configured connections per database pool.", ["pool"], multiprocess_mode="livesum"
)
POOL_CHECKED_OUT = Gauge(
    "authpi_db_pool_checked_out",
    "Connections in use, per database pool.",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "authpi_db_pool_overflow",
    "Connections open beyond the configured pool size, per database pool.",
    ["pool"],
    multiprocess_mode="livesum",
)


def count_login(result: Literal["success", "failure", "locked"], *, locked_now: bool) -> None:
    LOGINS_BY_RESULT[result].inc()
    if locked_now:
        LOCKOUTS.inc()


def count_token(grant_type: str) -> None:
    TOKENS_BY_GRANT[grant_type].inc()


def count_dropped_events(event_type: str, count: int = 1) -> None:
    EVENTS_DROPPED_BY_TYPE[event_type].inc(count)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts one answered request. The label children are resolved once per (route, method, status)
    and kept, so the hot path is two dictionary lookups and three sample updates."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "other"  # any token is a valid method: the label set must stay bounded
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def sample_pools(engines: dict[str, AsyncEngine]) -> None:
    """Publish this worker's pool figures (called periodically and before each scrape)."""
    for name, engine in engines.items():
        pool = engine.pool
        size = getattr(pool, "size", None)
        if size is None:  # a pool without a fixed size (none is configured today)
            continue
        POOL_SIZE.labels(name).set(size())
        POOL_CHECKED_OUT.labels(name).set(pool.checkedout())  # type: ignore[attr-defined]
        # QueuePool counts overflow from -size (no connection opened yet) upwards.
        POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))  # type: ignore[attr-defined]


POOL_SAMPLE_SECONDS = 5.0


async def publish_pools(engines: Callable[[], dict[str, AsyncEngine]]) -> None:
    """Keep this worker's pool figures fresh for scrapes answered by another worker."""
    while True:
        sample_pools(engines())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def render() -> bytes:
    """The exposition text: every worker's samples in multiprocess mode, else this process's."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def worker_exited() -> None:
    """Drop this worker's gauge files, so a stopped worker's pools no longer count."""
    if MULTIPROCESS:
        prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
