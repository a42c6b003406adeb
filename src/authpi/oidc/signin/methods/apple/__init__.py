"""The ``apple`` method: Sign in with Apple.

Apple's client secret is a short-lived ES256 JWT signed with the method's ``private_key`` (the
``.p8`` key of ``key_id``, issued to ``team_id``); it is made once and reused until shortly before
it expires. Apple answers with ``response_mode=form_post`` and sends the user's name only on the
first sign-in (the ``user`` form field), so it is taken then, into the new account's profile.
Relay addresses (``is_private_email``) are addresses Apple verified and forwards."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from authpi.oidc.upstream import id_tokens
from authpi.oidc.upstream.http import UpstreamError
from authpi.oidc.upstream.provider import Context, Identity, Provider, text, truthy
from authpi.oidc.upstream.strategy import UpstreamStrategy

ISSUER = "https://appleid.apple.com"
AUTHORIZE = f"{ISSUER}/auth/authorize"
TOKEN = f"{ISSUER}/auth/token"
KEYS = f"{ISSUER}/auth/keys"
SECRET_LIFETIME = 3600
RENEW_BEFORE = 300

_secrets: dict[str, tuple[int, str]] = {}


def client_secret(client_id: str, team_id: str, key_id: str, private_key: str) -> str:
    """The ES256 client-secret JWT, from the cache until ``RENEW_BEFORE`` seconds before expiry."""
    cache_key = hashlib.sha256("\0".join((client_id, team_id, key_id, private_key)).encode()).hexdigest()
    now = int(time.time())
    cached = _secrets.get(cache_key)
    if cached is not None and cached[0] - RENEW_BEFORE > now:
        return cached[1]
    try:
        key = ECKey.import_key(private_key)
        claims = {"iss": team_id, "iat": now, "exp": now + SECRET_LIFETIME, "aud": ISSUER, "sub": client_id}
        token = jwt.encode({"alg": "ES256", "kid": key_id}, claims, key)
    except (JoseError, ValueError, TypeError):
        raise UpstreamError(
            "the method's Apple private key cannot sign (it must be the P-256 .p8 key)"
        ) from None
    _secrets[cache_key] = (now + SECRET_LIFETIME, token)
    return token


def _first_name(user_field: str) -> dict[str, str]:
    """The name Apple sends in the ``user`` field on the first sign-in only."""
    try:
        raw = json.loads(user_field) if user_field else {}
    except ValueError:
        return {}
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, dict):
        return {}
    given, family = text(name.get("firstName"), 100), text(name.get("lastName"), 100)
    found = {"given_name": given, "family_name": family, "name": " ".join(p for p in (given, family) if p)}
    return {key: value for key, value in found.items() if value}


class AppleProvider(Provider):
    oidc = True
    form_post = True

    async def authorization_endpoint(self, ctx: Context) -> str:
        return ctx.builtin(AUTHORIZE)

    async def token_endpoint(self, ctx: Context) -> str:
        return ctx.builtin(TOKEN)

    async def client_secret(self, ctx: Context) -> str:
        s = ctx.settings
        return client_secret(
            ctx.client_id, str(s["team_id"]), str(s["key_id"]), str(ctx.secrets.get("private_key"))
        )

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        claims = await id_tokens.verify(
            ctx.http,
            tokens.get("id_token"),
            jwks_uri=ctx.builtin(KEYS),
            issuer=ISSUER,
            client_id=ctx.client_id,
            nonce=nonce,
            algorithms=("RS256", "ES256"),
            seconds=ctx.timeout,
        )
        email = text(claims.get("email"))
        verified = truthy(claims.get("email_verified")) or truthy(claims.get("is_private_email"))
        name = _first_name(callback.get("user", ""))
        return Identity(
            subject=str(claims["sub"])[:255],
            email=email,
            email_verified=bool(email and verified),
            name=name.get("name"),
            given_name=name.get("given_name"),
            family_name=name.get("family_name"),
        )


class Apple(UpstreamStrategy):
    method = "apple"
    provider = AppleProvider()


APPLE = Apple()
