"""ID tokens of an upstream provider, checked as OIDC Core §3.1.3.7 says: the signature against
the provider's JWKS with an allowed algorithm, then ``iss``, ``aud`` (and ``azp``), ``exp``,
``iat`` and the ``nonce`` this sign-in sent.

The JWKS is cached per ``jwks_uri``; a token signed with a key the cache does not know makes one
fresh fetch (the provider rotated its keys), at most once per ``REFETCH_AFTER`` seconds."""

from __future__ import annotations

import hmac
import time
from typing import Any

import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from authpi.oidc.upstream.http import UpstreamError, request_json

# Asymmetric algorithms only: "none" and HMAC (keyed with the client secret) are never accepted.
SAFE_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
KEYS_TTL = 3600.0
REFETCH_AFTER = 1.0
LEEWAY = 60
MAX_TOKEN = 16 * 1024

_keys: dict[str, tuple[float, KeySet]] = {}


async def _key_set(http: httpx2.AsyncClient, jwks_uri: str, seconds: float, *, fresh: bool) -> KeySet:
    now = time.monotonic()
    cached = _keys.get(jwks_uri)
    if cached is not None and (now - cached[0] < REFETCH_AFTER or (not fresh and now - cached[0] < KEYS_TTL)):
        return cached[1]
    raw = await request_json(http, "GET", jwks_uri, seconds=seconds, what="keys")
    try:
        found = KeySet.import_key_set(
            {"keys": [k for k in raw.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]}
        )
    except (JoseError, ValueError, TypeError, KeyError, AttributeError):
        raise UpstreamError("the provider's keys could not be read") from None
    _keys[jwks_uri] = (now, found)
    return found


def _kid(token: str) -> str | None:
    try:
        kid = extract_compact(token.encode()).protected.get("kid")
    except (JoseError, ValueError, TypeError):
        raise UpstreamError("the ID token is malformed") from None
    return kid if isinstance(kid, str) else None


def _known(keys: KeySet, kid: str | None) -> bool:
    return kid is None or any(key.kid == kid for key in keys.keys)


async def verify(
    http: httpx2.AsyncClient,
    token: Any,
    *,
    jwks_uri: str,
    issuer: str,
    client_id: str,
    nonce: str | None,
    algorithms: tuple[str, ...],
    seconds: float,
) -> dict[str, Any]:
    """The claims of ``token`` once every check passed; ``UpstreamError`` otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise UpstreamError("the provider sent no usable ID token")
    allowed = [alg for alg in algorithms if alg in SAFE_ALGS] or ["RS256"]
    kid = _kid(token)
    keys = await _key_set(http, jwks_uri, seconds, fresh=False)
    if not _known(keys, kid):
        keys = await _key_set(http, jwks_uri, seconds, fresh=True)  # followed a key rotation
    try:
        claims = dict(jwt.decode(token, keys, algorithms=allowed).claims)
    except (JoseError, ValueError, TypeError, KeyError):
        raise UpstreamError("the ID token's signature is not valid") from None
    now = int(time.time())
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    exp, iat = claims.get("exp"), claims.get("iat")
    problems = [
        (claims.get("iss") != issuer, "was issued by another provider"),
        (client_id not in audiences, "is meant for another client"),
        (len(audiences) > 1 and claims.get("azp") != client_id, "is meant for another party"),
        (not isinstance(exp, int) or exp + LEEWAY < now, "has expired"),
        (isinstance(iat, int) and iat > now + LEEWAY, "is issued in the future"),
        (not isinstance(claims.get("sub"), str) or not claims["sub"], "names no subject"),
    ]
    if nonce is not None:
        sent = claims.get("nonce")
        mismatch = not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode())
        problems.append((mismatch, "does not carry this sign-in's nonce"))
    for failed, why in problems:
        if failed:
            raise UpstreamError(f"the ID token {why}")
    return claims
