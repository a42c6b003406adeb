"""Liveness and readiness for orchestrators and load balancers.

* ``/healthz``: the process answers (no I/O, so a slow database never gets a live worker restarted).
* ``/readyz``: the worker can serve: the database answers ``SELECT 1`` within a short timeout, and
  the master key opens the stored signing keys (a wrong key would fail every token and JWKS request).
  503 names the failed check.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from authpi import __version__
from authpi.oidc.keys import master_key_opens_stored_keys
from authpi.runtime import Runtime

log = logging.getLogger("authpi.health")
router = APIRouter(include_in_schema=False)
CHECK_TIMEOUT_S = 2.0
NO_STORE = {"Cache-Control": "no-store"}
OK, FAILED, TIMEOUT, UNCHECKED = "ok", "failed", "timeout", "unchecked"


class _Transitions:
    """Logs when readiness changes, not on every probe (orchestrators probe every few seconds)."""

    failing: tuple[str, ...] = ()

    def record(self, checks: dict[str, str]) -> None:
        failing = tuple(sorted(name for name, result in checks.items() if result != OK))
        if failing != self.failing:
            if failing:
                log.warning("not ready: %s", ", ".join(f"{n} {checks[n]}" for n in failing), extra=checks)
            else:
                log.info("ready again")
            self.failing = failing


_transitions = _Transitions()


async def _run_checks(runtime: Runtime, checks: dict[str, str]) -> None:
    async with runtime.sessions() as session:
        await session.execute(text("SELECT 1"))
        checks["database"] = OK
        opens = await master_key_opens_stored_keys(session, runtime.secretbox)
        checks["keys"] = OK if opens else FAILED


async def readiness(runtime: Runtime) -> dict[str, str]:
    """Each check's result; the one running when the time ran out or an error struck is charged."""
    checks = {"database": UNCHECKED, "keys": UNCHECKED}
    try:
        await asyncio.wait_for(_run_checks(runtime, checks), CHECK_TIMEOUT_S)
    except TimeoutError:
        checks[_running(checks)] = TIMEOUT
    except Exception as exc:  # a failing check means "not ready", never a 500
        log.debug("readiness check failed: %s", type(exc).__name__)
        checks[_running(checks)] = FAILED
    return checks


def _running(checks: dict[str, str]) -> str:
    return next(name for name, result in checks.items() if result == UNCHECKED)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__}, headers=NO_STORE)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    checks = await readiness(request.app.state.runtime)
    _transitions.record(checks)
    ready = all(result == OK for result in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)
