"""What an upstream sign-in method tells the shared machinery: where to send the user, how to
exchange the code, and how to read a stable subject and a (verified or not) email from the answer.

``Provider`` implements the plain OAuth 2.0 authorization-code exchange (RFC 6749 §4.1 with PKCE,
RFC 7636); each method type overrides what differs for its provider."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx2

from authpi.oidc.upstream.http import UpstreamError, request_json

MAX_CLAIM = 320


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in. ``subject`` is stable at that provider; the email counts
    for matching accounts only when ``email_verified``."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    picture: str | None = None

    def profile(self) -> dict[str, Any]:
        """What a user created from this identity starts its profile with."""
        found: dict[str, Any] = {"email_verified": self.email_verified}
        for key in ("name", "given_name", "family_name", "picture"):
            value = getattr(self, key)
            if value:
                found[key] = value
        return found


@dataclass
class Context:
    """One sign-in's view of a provider (an auth method's, or an organization's SSO connection):
    its public settings, its secrets and where to reach it."""

    http: httpx2.AsyncClient
    settings: dict[str, Any]
    secrets: dict[str, Any]
    redirect_uri: str
    timeout: float
    # Built-in provider URLs rewritten by AUTHPI_UPSTREAM_URL_REWRITES (prefix → prefix).
    rewrites: dict[str, str] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return str(self.settings["client_id"])

    def builtin(self, url: str) -> str:
        """A URL of a built-in provider, as this deployment reaches it."""
        for prefix, replacement in self.rewrites.items():
            if url.startswith(prefix):
                return replacement + url[len(prefix) :]
        return url

    async def get_json(self, url: str, what: str, **kwargs: Any) -> Any:
        return await request_json(self.http, "GET", url, seconds=self.timeout, what=what, **kwargs)

    async def post_json(self, url: str, what: str, **kwargs: Any) -> Any:
        return await request_json(self.http, "POST", url, seconds=self.timeout, what=what, **kwargs)


def text(value: Any, limit: int = MAX_CLAIM) -> str | None:
    """A string claim, bounded; anything else is absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:limit]


def truthy(value: Any) -> bool:
    """A boolean claim; some providers (Apple) send ``"true"`` as a string."""
    return value is True or value == "true"


def basic_auth(client_id: str, secret: str) -> str:
    raw = f"{client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Provider:
    """The plain OAuth 2.0 provider; subclasses say what differs."""

    # OpenID Connect: a nonce is sent and an ID token expected back.
    oidc: ClassVar[bool] = False
    # Apple answers with a POST to the callback (response_mode=form_post).
    form_post: ClassVar[bool] = False

    async def authorization_endpoint(self, ctx: Context) -> str:
        raise NotImplementedError

    async def token_endpoint(self, ctx: Context) -> str:
        raise NotImplementedError

    def scopes(self, ctx: Context) -> list[str]:
        return [str(s) for s in ctx.settings.get("scopes") or []]

    def extra_authorization_params(self, ctx: Context) -> dict[str, str]:
        return {}

    async def client_secret(self, ctx: Context) -> str:
        return str(ctx.secrets.get("client_secret") or "")

    async def token_auth(self, ctx: Context) -> str:
        """``client_secret_post`` or ``client_secret_basic``."""
        return "client_secret_post"

    async def exchange(self, ctx: Context, code: str, verifier: str) -> dict[str, Any]:
        """The token response for ``code`` (RFC 6749 §4.1.3, with the PKCE verifier)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": ctx.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {}
        secret = await self.client_secret(ctx)
        if await self.token_auth(ctx) == "client_secret_basic":
            headers["Authorization"] = basic_auth(ctx.client_id, secret)
        else:
            form.update(client_id=ctx.client_id, client_secret=secret)
        answer = await ctx.post_json(await self.token_endpoint(ctx), "token", data=form, headers=headers)
        if not isinstance(answer, dict) or answer.get("error"):
            raise UpstreamError("the provider refused the token request")
        return answer

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        raise NotImplementedError

    async def issuer(self, ctx: Context) -> str | None:
        """The issuer an RFC 9207 ``iss`` callback parameter must name, when known."""
        return None


def access_token(tokens: dict[str, Any]) -> str:
    token = tokens.get("access_token")
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise UpstreamError("the provider sent no access token")
    return token


def same_path(url: str, path: str) -> bool:
    return urlsplit(url).path == path
