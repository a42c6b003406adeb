"""The IdP API as its own Starlette application (mounted under /{issuer_id} by authpi.app)."""

from __future__ import annotations

import logging
import secrets

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.oidc.errors import NO_STORE, OAuthError, oauth_error_response
from authpi.oidc.portal import routes as account_portal
from authpi.oidc.routes import (
    authorize,
    discovery,
    hosted,
    invitations,
    keyinfo,
    logout,
    revocation,
    token,
    userinfo,
    verify_email,
)
from authpi.oidc.signin import mfa as second_factor_pages
from authpi.oidc.signin import pages as sign_in_pages
from authpi.oidc.signin import registry as sign_in_methods
from authpi.oidc.upstream import routes as upstream
from authpi.oidc.upstream import sso as organization_sso
from authpi.storage.errors import is_transient

log = logging.getLogger("authpi.oidc")


async def _oauth_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return oauth_error_response(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = "not_found" if exc.status_code == 404 else "invalid_request"
    description = "No such endpoint" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=exc.status_code,
        headers={**NO_STORE, **(exc.headers or {})},
    )


async def _unhandled(_: Request, exc: Exception) -> Response:
    if is_transient(exc):
        raise exc  # 503 + Retry-After from authpi.availability (JSON or a hosted error page)
    reference = "ref_" + secrets.token_hex(8)
    log.error("unhandled IdP error %s", reference, exc_info=exc, extra={"reference": reference})
    return JSONResponse(
        {"error": "server_error", "error_description": f"An unexpected error occurred ({reference})"},
        status_code=500,
        headers=NO_STORE,
    )


def create_idp_app() -> Starlette:
    routes = []
    for module in (
        discovery,
        authorize,
        sign_in_pages,
        second_factor_pages,
        hosted,
        invitations,
        keyinfo,
        token,
        userinfo,
        revocation,
        logout,
        verify_email,
        upstream,
        organization_sso,
    ):
        routes.extend(module.router.routes)
    routes.extend(sign_in_methods.routes())
    routes.extend(account_portal.routes())
    return Starlette(
        routes=routes,
        exception_handlers={OAuthError: _oauth_error, HTTPException: _http_error, Exception: _unhandled},
    )
