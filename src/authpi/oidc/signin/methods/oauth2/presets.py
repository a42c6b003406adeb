"""The built-in OAuth 2.0 providers of the ``oauth2`` method: endpoints, scopes, and where each
keeps a stable subject and a verified email (from each provider's documentation).

``{tenant}`` in Microsoft's URLs is the method's ``tenant`` setting (``common`` by default, a
tenant ID or domain for one organization). Providers that speak OpenID Connect are asked for an ID
token too; its claims come straight from the provider's token endpoint (OIDC Core §3.1.3.7 lets
TLS stand in for the signature then) and are checked against the nonce, and the user info with the
same subject completes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authpi.oidc.upstream.provider import truthy
from authpi.services.auth_method_types import OAUTH2_PROVIDERS

Claims = dict[str, Any]


def _email_verified(claims: Claims) -> bool:
    return truthy(claims.get("email_verified"))


@dataclass(frozen=True)
class Preset:
    authorization_url: str
    token_url: str
    userinfo_url: str
    scopes: tuple[str, ...]
    oidc: bool
    mapping: dict[str, str] = field(default_factory=dict)
    verified: Callable[[Claims], bool] = _email_verified
    extra_params: dict[str, str] = field(default_factory=dict)
    # Twitch's user info wants the Client-Id header; GitHub-style APIs a JSON Accept.
    client_id_header: bool = False


_OIDC_MAPPING = {"subject": "sub", "email": "email", "name": "name", "picture": "picture"}

PRESETS: dict[str, Preset] = {
    "google": Preset(
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
        "https://openidconnect.googleapis.com/v1/userinfo",
        ("openid", "email", "profile"),
        oidc=True,
        mapping=_OIDC_MAPPING,
    ),
    "microsoft": Preset(
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "https://graph.microsoft.com/oidc/userinfo",
        ("openid", "email", "profile"),
        oidc=True,
        mapping=_OIDC_MAPPING,
        # Entra ID does not verify the email claim of an account in general (the "nOAuth" problem);
        # it is trusted only when the ID token says the domain owner verified it (xms_edov).
        verified=lambda claims: truthy(claims.get("xms_edov")),
    ),
    "gitlab": Preset(
        "https://gitlab.com/oauth/authorize",
        "https://gitlab.com/oauth/token",
        "https://gitlab.com/oauth/userinfo",
        ("openid", "email", "profile"),
        oidc=True,
        mapping=_OIDC_MAPPING,
    ),
    "discord": Preset(
        "https://discord.com/oauth2/authorize",
        "https://discord.com/api/oauth2/token",
        "https://discord.com/api/users/@me",
        ("identify", "email"),
        oidc=False,
        mapping={"subject": "id", "email": "email", "name": "global_name"},
        verified=lambda claims: claims.get("verified") is True,
    ),
    "slack": Preset(
        "https://slack.com/openid/connect/authorize",
        "https://slack.com/api/openid.connect.token",
        "https://slack.com/api/openid.connect.userInfo",
        ("openid", "email", "profile"),
        oidc=True,
        mapping=_OIDC_MAPPING,
    ),
    "linkedin": Preset(
        "https://www.linkedin.com/oauth/v2/authorization",
        "https://www.linkedin.com/oauth/v2/accessToken",
        "https://api.linkedin.com/v2/userinfo",
        ("openid", "profile", "email"),
        oidc=True,
        mapping=_OIDC_MAPPING,
    ),
    "facebook": Preset(
        "https://www.facebook.com/v19.0/dialog/oauth",
        "https://graph.facebook.com/v19.0/oauth/access_token",
        "https://graph.facebook.com/v19.0/me?fields=id,name,email,picture",
        ("email", "public_profile"),
        oidc=False,
        mapping={"subject": "id", "email": "email", "name": "name", "picture": "picture.data.url"},
        # The Graph API returns an email only once the person confirmed it.
        verified=lambda claims: bool(claims.get("email")),
    ),
    "twitch": Preset(
        "https://id.twitch.tv/oauth2/authorize",
        "https://id.twitch.tv/oauth2/token",
        "https://id.twitch.tv/oauth2/userinfo",
        ("openid", "user:read:email"),
        oidc=True,
        mapping={"subject": "sub", "email": "email", "name": "preferred_username", "picture": "picture"},
        # Twitch releases the email only when the claims are requested by name.
        extra_params={
            "claims": json.dumps(
                {
                    "id_token": {"email": None, "email_verified": None},
                    "userinfo": {
                        "email": None,
                        "email_verified": None,
                        "preferred_username": None,
                        "picture": None,
                    },
                },
                separators=(",", ":"),
            )
        },
        client_id_header=True,
    ),
}
assert tuple(PRESETS) == OAUTH2_PROVIDERS, "the configuration check and the presets name the same providers"
