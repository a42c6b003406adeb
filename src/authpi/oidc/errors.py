"""OAuth error responses (decision 19): ``{"error", "error_description"}`` with RFC 6749 codes."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = 'Basic realm="AuthPI"'


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


def invalid_client(description: str = "Client authentication failed") -> OAuthError:
    """401 with the Basic challenge (RFC 6749 §5.2), whichever way the client tried: a 401 always
    names a scheme (RFC 9110 §15.5.2), and Basic is the one these endpoints take in a header."""
    return OAuthError("invalid_client", description, 401, {"WWW-Authenticate": BASIC_CHALLENGE})


def _quoted(value: str) -> str:
    """An RFC 6750 §3 attribute value: printable ASCII without ``"`` and ``\\``."""
    return "".join(ch for ch in value if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')


def bearer_challenge(
    realm: str, error: str | None = None, description: str | None = None, **extra: str
) -> str:
    """``WWW-Authenticate: Bearer`` (RFC 6750 §3); no error code when no token was sent (§3.1)."""
    params = {"realm": realm, "error": error, "error_description": description, **extra}
    return "Bearer " + ", ".join(f'{k}="{_quoted(v)}"' for k, v in params.items() if v is not None)


def invalid_token(realm: str, description: str) -> OAuthError:
    challenge = bearer_challenge(realm, "invalid_token", description)
    return OAuthError("invalid_token", description, 401, {"WWW-Authenticate": challenge})


def oauth_error_response(exc: OAuthError) -> Response:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**NO_STORE, **exc.headers},
    )
