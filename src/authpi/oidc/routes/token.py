"""POST /{issuer_id}/token (idp-api §A.4)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from authpi.observability import metrics
from authpi.oidc import grants
from authpi.oidc.context import (
    authenticate_client,
    client_credentials,
    issuer_url,
    load_issuer,
    read_form,
    runtime,
    single,
)
from authpi.oidc.cors import Cors
from authpi.oidc.errors import NO_STORE, OAuthError
from authpi.oidc.routes import Routes
from authpi.services import events
from authpi.services.errors import RateLimited

router = Routes()


@router.post("/{issuer_id}/token", cors=Cors(("POST",)))
async def token(issuer_id: str, request: Request) -> Response:
    rt = runtime(request)
    try:
        await rt.rate_limits.hit("token", request.client.host if request.client else "unknown")
    except RateLimited as exc:
        raise OAuthError(
            "slow_down", "Too many token requests", 429, {"Retry-After": str(exc.retry_after)}
        ) from exc
    form = await read_form(request)
    grant_type = single(form, "grant_type")
    if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
        raise OAuthError(
            "unsupported_grant_type",
            "Supported grants: authorization_code, refresh_token, client_credentials",
        )
    creds = client_credentials(request, form)
    async with rt.sessions() as session:
        issuer = await load_issuer(session, issuer_id)
        client = await authenticate_client(session, issuer.id, creds)
        events.identify(type="client", client_id=client.id)
        # A refresh token may be signed by a key another worker rotated in: look its kid up.
        presented = single(form, "refresh_token") if grant_type == "refresh_token" else None
        keys = await (rt.keys.for_token(issuer.id, presented) if presented else rt.keys.get(issuer.id))
        grant = grants.Grant(issuer, client, keys, issuer_url(rt, issuer.id))
        if grant_type == "authorization_code":
            body = await grants.authorization_code(session, grant, form)
        elif grant_type == "refresh_token":
            body = await grants.refresh_token(session, grant, form)
        else:
            body = grants.client_credentials(grant, form, rt.machine_tokens)
    metrics.count_token(grant_type)
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json", headers=NO_STORE)
