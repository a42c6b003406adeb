"""The ``oidc`` method: any OpenID Connect provider, found through discovery from ``issuer_url``.

The ID token from the token endpoint is verified against the provider's JWKS (signature with an
allowed algorithm, ``iss``, ``aud``, ``exp``, ``nonce``); the userinfo endpoint fills in the email
and name when the ID token leaves them out."""

from __future__ import annotations

from typing import Any

from authpi.oidc.upstream import discovery, id_tokens
from authpi.oidc.upstream.discovery import Metadata
from authpi.oidc.upstream.http import UpstreamError
from authpi.oidc.upstream.provider import Context, Identity, Provider, access_token, text, truthy
from authpi.oidc.upstream.strategy import UpstreamStrategy


async def _metadata(ctx: Context) -> Metadata:
    return await discovery.metadata(ctx.http, str(ctx.settings["issuer_url"]), seconds=ctx.timeout)


def identity_of(claims: dict[str, Any]) -> Identity:
    """The identity standard OIDC claims describe."""
    subject = text(claims.get("sub"), 255)
    if subject is None:
        raise UpstreamError("the provider named no subject")
    return Identity(
        subject=subject,
        email=text(claims.get("email")),
        email_verified=truthy(claims.get("email_verified")),
        name=text(claims.get("name"), 200),
        given_name=text(claims.get("given_name"), 200),
        family_name=text(claims.get("family_name"), 200),
        picture=text(claims.get("picture"), 2000),
    )


class OidcProvider(Provider):
    oidc = True

    async def authorization_endpoint(self, ctx: Context) -> str:
        return (await _metadata(ctx)).authorization_endpoint

    async def token_endpoint(self, ctx: Context) -> str:
        return (await _metadata(ctx)).token_endpoint

    async def issuer(self, ctx: Context) -> str | None:
        return (await _metadata(ctx)).issuer

    def scopes(self, ctx: Context) -> list[str]:
        scopes = super().scopes(ctx)
        return scopes if "openid" in scopes else ["openid", *scopes]

    async def token_auth(self, ctx: Context) -> str:
        # Basic (the one every provider must support), unless the provider only takes the body.
        supported = (await _metadata(ctx)).token_auth_methods
        basic = "client_secret_basic" in supported or "client_secret_post" not in supported
        return "client_secret_basic" if basic else "client_secret_post"

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        meta = await _metadata(ctx)
        claims = await id_tokens.verify(
            ctx.http,
            tokens.get("id_token"),
            jwks_uri=meta.jwks_uri,
            issuer=meta.issuer,
            client_id=ctx.client_id,
            nonce=nonce,
            algorithms=meta.id_token_algs,
            seconds=ctx.timeout,
        )
        if "email" not in claims and meta.userinfo_endpoint:
            info = await ctx.get_json(
                meta.userinfo_endpoint,
                "user info",
                headers={"Authorization": f"Bearer {access_token(tokens)}"},
            )
            # OIDC Core §5.3.2: userinfo about another subject must not be used.
            if isinstance(info, dict) and info.get("sub") == claims["sub"]:
                claims = {**info, **claims}
        return identity_of(claims)


class Oidc(UpstreamStrategy):
    method = "oidc"
    provider = OidcProvider()


OIDC = Oidc()
