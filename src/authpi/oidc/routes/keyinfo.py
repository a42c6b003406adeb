"""GET /{issuer_id}/keyinfo (idp-api §A.9): an application verifies an organization API key it was
given (HTTP Basic ``key_id:secret``, or ``Bearer key_<id>:<secret>``) and reads its metadata and
scopes, never its secret. 401: unknown key or wrong secret; 403: a blocked, revoked, expired or
suspended key, an address outside its allowlist, or an organization that is not active."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.oidc.context import issuer_url, load_issuer, runtime
from authpi.oidc.errors import NO_STORE, OAuthError
from authpi.oidc.routes import Routes
from authpi.services import org_api_keys
from authpi.services.errors import RateLimited

router = Routes()


def _credentials(request: Request, realm: str) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    decoded = ""
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
    elif scheme.lower() == "bearer":
        decoded = value.strip()
    key_id, sep, secret = decoded.partition(":")
    if not sep or not key_id or not secret or len(decoded) > 1024:
        challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
        raise OAuthError("invalid_client", "An API key is required as HTTP Basic credentials", 401, challenge)
    return key_id, secret


@router.get("/{issuer_id}/keyinfo")
async def keyinfo(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    ip = request.client.host if request.client else None
    try:
        await rt.rate_limits.hit("token", ip or "unknown")
    except RateLimited as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        raise OAuthError("rate_limited", "Too many requests; retry later", 429, headers) from exc
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        key_id, secret = _credentials(request, issuer_url(rt, issuer.id))
        checked = await org_api_keys.check(session, issuer.id, key_id, secret, ip)
    if checked.key is None or checked.reason == "invalid_credentials":
        raise OAuthError("invalid_client", "Invalid API key credentials", 401)
    if checked.reason is not None:
        raise OAuthError("access_denied", f"The API key cannot be used: {checked.reason}", 403)
    return JSONResponse(org_api_keys.describe(checked.key), headers=NO_STORE)
