"""OAuth error responses (decision 19): ``{"error", "error_description"}`` with RFC 6749 codes."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(
        self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str = "Client authentication failed", basic: bool = False) -> OAuthError:
    headers = {"WWW-Authenticate": 'Basic realm="AuthPI"'} if basic else None
    return OAuthError("invalid_client", description, 401, headers)


def invalid_token(description: str) -> OAuthError:
    return OAuthError(
        "invalid_token",
        description,
        401,
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


def oauth_error_response(exc: OAuthError) -> Response:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**NO_STORE, **exc.headers},
    )
