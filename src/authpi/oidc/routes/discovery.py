"""Discovery and JWKS, served from memory (decision 10)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from authpi import i18n
from authpi.oidc import acr
from authpi.oidc.context import ensure_issuer, issuer_url, runtime
from authpi.oidc.cors import Cors
from authpi.oidc.keys import ALGORITHMS
from authpi.oidc.routes import Routes
from authpi.oidc.tokens import SUPPORTED_SCOPE_CLAIMS

router = Routes()
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Public documents: any origin may read them (decision 28).
PUBLIC = Cors(("GET",), public=True)
# The document depends only on the issuer URL, so it is rendered once per issuer and process.
_DOCUMENTS: dict[str, bytes] = {}
_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def discovery_document(iss: str) -> dict[str, object]:
    claims = ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "azp", "at_hash", "amr", "acr"]
    for names in SUPPORTED_SCOPE_CLAIMS.values():
        claims.extend(names)
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/userinfo",
        "jwks_uri": f"{iss}/jwks.json",
        "revocation_endpoint": f"{iss}/revoke",
        "introspection_endpoint": f"{iss}/introspect",
        "end_session_endpoint": f"{iss}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "userinfo_signing_alg_values_supported": ["none"],
        "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access"],
        "claims_supported": [*claims, "organizations", "org_id"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": _AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "acr_values_supported": list(acr.SUPPORTED),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": list(i18n.SUPPORTED),
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }


@router.get("/{issuer_id}/.well-known/openid-configuration", PUBLIC)
async def openid_configuration(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    await ensure_issuer(rt, issuer_id)
    body = _DOCUMENTS.get(issuer_id)
    if body is None:
        body = json.dumps(discovery_document(issuer_url(rt, issuer_id)), separators=(",", ":")).encode()
        _DOCUMENTS[issuer_id] = body
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/{issuer_id}/jwks.json", PUBLIC)
async def jwks(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    await ensure_issuer(rt, issuer_id)
    keys = await rt.keys.get(issuer_id)
    return Response(
        keys.jwks_body,
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=600, stale-while-revalidate=600"},
    )


@router.get("/{issuer_id}/static/authpi.css")
async def stylesheet(issuer_id: str, request: Request) -> Response:
    return FileResponse(STATIC_DIR / "authpi.css", headers={"Cache-Control": "public, max-age=86400"})
