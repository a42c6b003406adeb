"""Browser-facing helpers for the hosted pages: cookies scoped to the issuer path (decision 22)
and CSRF tokens bound to a per-browser cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from authpi.runtime import Runtime

SESSION_COOKIE = "authpi_session"
CSRF_COOKIE = "authpi_csrf"
# A trusted device's secret (services/trusted_devices): skips the second factor of its user.
DEVICE_COOKIE = "authpi_device"


def cookie_path(issuer_id: str) -> str:
    return f"/{issuer_id}"


def secure(rt: Runtime) -> bool:
    return rt.settings.public_url_base.startswith("https://")


def set_cookie(
    response: Response, rt: Runtime, issuer_id: str, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=cookie_path(issuer_id),
        httponly=True,
        samesite="lax",
        secure=secure(rt),
    )


def clear_cookie(response: Response, rt: Runtime, issuer_id: str, name: str) -> None:
    response.delete_cookie(
        name, path=cookie_path(issuer_id), httponly=True, samesite="lax", secure=secure(rt)
    )


class Csrf:
    """Double-submit CSRF: the form carries HMAC(cookie), which a cross-site page cannot compute."""

    def __init__(self, rt: Runtime, request: Request) -> None:
        self._key = rt.secretbox.derive("csrf")
        self.cookie = request.cookies.get(CSRF_COOKIE) or ""
        self.fresh = len(self.cookie) < 32
        if self.fresh:
            self.cookie = secrets.token_urlsafe(32)

    def token(self) -> str:
        return hmac.new(self._key, self.cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, presented: str | None) -> bool:
        return not self.fresh and presented is not None and hmac.compare_digest(presented, self.token())

    def attach(self, response: Response, rt: Runtime, issuer_id: str) -> None:
        if self.fresh:
            set_cookie(response, rt, issuer_id, CSRF_COOKIE, self.cookie, None)
