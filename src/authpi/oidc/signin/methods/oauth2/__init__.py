"""The ``oauth2`` method: one of the built-in providers (``presets``), picked by ``provider``."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from authpi.oidc.signin.methods.oauth2.presets import PRESETS, Preset
from authpi.oidc.upstream.claims import mapped
from authpi.oidc.upstream.http import UpstreamError
from authpi.oidc.upstream.provider import Context, Identity, Provider, access_token
from authpi.oidc.upstream.strategy import UpstreamStrategy


def preset(ctx: Context) -> Preset:
    return PRESETS[str(ctx.settings["provider"])]


def _url(ctx: Context, url: str) -> str:
    return ctx.builtin(url.replace("{tenant}", str(ctx.settings.get("tenant") or "common")))


def _unverified_claims(token: Any) -> dict[str, Any]:
    """The payload of an ID token received directly from the provider's token endpoint."""
    if not isinstance(token, str) or len(token) > 16 * 1024 or token.count(".") != 2:
        raise UpstreamError("the provider sent no usable ID token")
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        raise UpstreamError("the provider's ID token cannot be read") from None
    if not isinstance(claims, dict):
        raise UpstreamError("the provider's ID token cannot be read")
    return claims


class PresetProvider(Provider):
    # A nonce is always sent; the OIDC presets' ID tokens are checked against it.
    oidc = True

    async def authorization_endpoint(self, ctx: Context) -> str:
        return _url(ctx, preset(ctx).authorization_url)

    async def token_endpoint(self, ctx: Context) -> str:
        return _url(ctx, preset(ctx).token_url)

    def scopes(self, ctx: Context) -> list[str]:
        chosen = super().scopes(ctx)
        return chosen or list(preset(ctx).scopes)

    def extra_authorization_params(self, ctx: Context) -> dict[str, str]:
        return dict(preset(ctx).extra_params)

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        found = preset(ctx)
        claims: dict[str, Any] = {}
        if found.oidc and "id_token" in tokens:
            claims = _unverified_claims(tokens["id_token"])
            sent = claims.get("nonce")
            if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
                raise UpstreamError("the ID token does not carry this sign-in's nonce")
        headers = {"Authorization": f"Bearer {access_token(tokens)}"}
        if found.client_id_header:
            headers["Client-Id"] = ctx.client_id
        info = await ctx.get_json(_url(ctx, found.userinfo_url), "user info", headers=headers)
        if not isinstance(info, dict):
            raise UpstreamError("the provider's user info is not a JSON object")
        subject_member = found.mapping["subject"]
        if claims and str(info.get(subject_member)) != str(claims.get("sub")):
            raise UpstreamError("the user info describes another user than the ID token")
        merged = {**claims, **info}
        return mapped(merged, {**found.mapping}, email_verified=found.verified(merged))


class OAuth2(UpstreamStrategy):
    method = "oauth2"
    provider = PresetProvider()


OAUTH2 = OAuth2()
