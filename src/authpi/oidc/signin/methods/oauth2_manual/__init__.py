"""The ``oauth2_manual`` method: an OAuth 2.0 provider described by hand (``authorization_url``,
``token_url``, ``userinfo_url``) and a ``claims`` mapping naming the user-info members that hold
the subject, email, email_verified, name and picture."""

from __future__ import annotations

from typing import Any

from authpi.oidc.upstream.claims import mapped
from authpi.oidc.upstream.provider import Context, Identity, Provider, access_token
from authpi.oidc.upstream.strategy import UpstreamStrategy
from authpi.services.auth_method_types import CLAIMS


class ManualProvider(Provider):
    async def authorization_endpoint(self, ctx: Context) -> str:
        return str(ctx.settings["authorization_url"])

    async def token_endpoint(self, ctx: Context) -> str:
        return str(ctx.settings["token_url"])

    async def token_auth(self, ctx: Context) -> str:
        chosen = ctx.settings.get("token_endpoint_auth")
        return "client_secret_basic" if chosen == "basic" else "client_secret_post"

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        info = await ctx.get_json(
            str(ctx.settings["userinfo_url"]),
            "user info",
            headers={"Authorization": f"Bearer {access_token(tokens)}"},
        )
        return mapped(info, {**CLAIMS, **(ctx.settings.get("claims") or {})})


class OAuth2Manual(UpstreamStrategy):
    method = "oauth2_manual"
    provider = ManualProvider()


OAUTH2_MANUAL = OAuth2Manual()
