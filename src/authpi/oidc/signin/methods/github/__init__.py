"""The ``github`` method: GitHub's OAuth App / GitHub App user flow. The user API gives the stable
numeric ID, name and avatar; the emails API the primary address and whether GitHub verified it."""

from __future__ import annotations

from typing import Any

from authpi.oidc.upstream.http import UpstreamError
from authpi.oidc.upstream.provider import Context, Identity, Provider, access_token, text
from authpi.oidc.upstream.strategy import UpstreamStrategy

AUTHORIZE = "https://github.com/login/oauth/authorize"
TOKEN = "https://github.com/login/oauth/access_token"
API = "https://api.github.com"


class GitHubProvider(Provider):
    async def authorization_endpoint(self, ctx: Context) -> str:
        return ctx.builtin(AUTHORIZE)

    async def token_endpoint(self, ctx: Context) -> str:
        return ctx.builtin(TOKEN)

    async def identity(
        self, ctx: Context, tokens: dict[str, Any], nonce: str, callback: dict[str, str]
    ) -> Identity:
        headers = {
            "Authorization": f"Bearer {access_token(tokens)}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        user = await ctx.get_json(ctx.builtin(f"{API}/user"), "user", headers=headers)
        emails = await ctx.get_json(ctx.builtin(f"{API}/user/emails"), "emails", headers=headers)
        if not isinstance(user, dict) or not isinstance(emails, list):
            raise UpstreamError("GitHub's answer has an unexpected shape")
        subject = text(user.get("id"), 64)
        if subject is None:
            raise UpstreamError("GitHub named no user ID")
        primary = next((e for e in emails if isinstance(e, dict) and e.get("primary") is True), None)
        email = text(primary.get("email")) if primary else None
        return Identity(
            subject=subject,
            email=email,
            email_verified=bool(email and primary and primary.get("verified") is True),
            name=text(user.get("name"), 200) or text(user.get("login"), 200),
            picture=text(user.get("avatar_url"), 2000),
        )


class GitHub(UpstreamStrategy):
    method = "github"
    provider = GitHubProvider()


GITHUB = GitHub()
