"""OpenID Provider metadata (OIDC Discovery 1.0), fetched from ``{issuer}/.well-known/openid-
configuration`` and cached per issuer for ``TTL`` seconds; a failed refresh keeps serving the last
good metadata for a while (an outage of the provider's metadata need not stop sign-ins)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx2

from authpi.oidc.upstream.http import UpstreamError, request_json

TTL = 3600.0
STALE_FOR = 6 * 3600.0


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    id_token_algs: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


_cache: dict[str, tuple[float, Metadata]] = {}


def _url(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw.startswith(("https://", "http://")) or len(raw) > 2000:
        raise UpstreamError(f"the provider's metadata has no usable {name}")
    return raw


def parse(issuer_url: str, raw: Any) -> Metadata:
    if not isinstance(raw, dict):
        raise UpstreamError("the provider's metadata is not a JSON object")
    # OIDC Discovery §4.3: the issuer in the document must be the one it was fetched for (a
    # trailing slash in the configured URL aside); ID tokens must then name it exactly.
    issuer = raw.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != issuer_url.rstrip("/"):
        raise UpstreamError("the provider's metadata names another issuer")
    algs = raw.get("id_token_signing_alg_values_supported") or ["RS256"]
    auth = raw.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    userinfo = raw.get("userinfo_endpoint")
    return Metadata(
        issuer=issuer,
        authorization_endpoint=_url(raw.get("authorization_endpoint"), "authorization_endpoint"),
        token_endpoint=_url(raw.get("token_endpoint"), "token_endpoint"),
        jwks_uri=_url(raw.get("jwks_uri"), "jwks_uri"),
        userinfo_endpoint=_url(userinfo, "userinfo_endpoint") if userinfo else None,
        id_token_algs=tuple(str(a) for a in algs if isinstance(a, str)),
        token_auth_methods=tuple(str(m) for m in auth if isinstance(m, str)),
    )


async def metadata(http: httpx2.AsyncClient, issuer_url: str, *, seconds: float) -> Metadata:
    """The provider's metadata, from the cache while it is fresh."""
    now = time.monotonic()
    cached = _cache.get(issuer_url)
    if cached is not None and now - cached[0] < TTL:
        return cached[1]
    url = issuer_url.rstrip("/") + "/.well-known/openid-configuration"
    try:
        found = parse(issuer_url, await request_json(http, "GET", url, seconds=seconds, what="discovery"))
    except UpstreamError:
        if cached is not None and now - cached[0] < TTL + STALE_FOR:
            return cached[1]
        raise
    _cache[issuer_url] = (now, found)
    return found
