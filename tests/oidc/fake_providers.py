"""Stand-ins for the providers the built-in upstream methods talk to (Google, Microsoft, GitLab,
Discord, Slack, LinkedIn, Facebook, Twitch, GitHub, Apple), served over real HTTP by a Starlette
app on a local port. AuthPI reaches them through AUTHPI_UPSTREAM_URL_REWRITES.

Each speaks its provider's documented shapes: the authorization endpoint's path and parameters,
the token exchange (client authentication, redirect_uri, PKCE verifier), and the user-info, user
and emails answers. Apple's token endpoint verifies the ES256 client-secret JWT with the public key
of the method's private key, and its authorization answers with a form_post page. The "user" who
signs in upstream is whatever the test puts in ``Fakes.identity``; every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.harness import free_port

CLIENT_SECRET = "fake-client-secret"
APPLE_TEAM = "TEAM123456"
APPLE_KEY_ID = "KEY1234567"


@dataclass(frozen=True)
class Shape:
    authorize: str
    token: str
    userinfo: str | None
    oidc: bool


SHAPES = {
    "google": Shape("/google/o/oauth2/v2/auth", "/google/token", "/google/v1/userinfo", True),
    "microsoft": Shape(
        "/microsoft/{tenant}/oauth2/v2.0/authorize",
        "/microsoft/{tenant}/oauth2/v2.0/token",
        "/microsoft/oidc/userinfo",
        True,
    ),
    "gitlab": Shape("/gitlab/oauth/authorize", "/gitlab/oauth/token", "/gitlab/oauth/userinfo", True),
    "discord": Shape(
        "/discord/oauth2/authorize", "/discord/api/oauth2/token", "/discord/api/users/@me", False
    ),
    "slack": Shape(
        "/slack/openid/connect/authorize",
        "/slack/api/openid.connect.token",
        "/slack/api/openid.connect.userInfo",
        True,
    ),
    "linkedin": Shape(
        "/linkedin/oauth/v2/authorization", "/linkedin/oauth/v2/accessToken", "/linkedin/v2/userinfo", True
    ),
    "facebook": Shape(
        "/facebook/v19.0/dialog/oauth", "/facebook/v19.0/oauth/access_token", "/facebook/v19.0/me", False
    ),
    "twitch": Shape("/twitch/oauth2/authorize", "/twitch/oauth2/token", "/twitch/oauth2/userinfo", True),
    "github": Shape("/github/login/oauth/authorize", "/github/login/oauth/access_token", None, False),
    "apple": Shape("/apple/auth/authorize", "/apple/auth/token", None, True),
}
REWRITES = {
    "https://accounts.google.com": "google",
    "https://oauth2.googleapis.com": "google",
    "https://openidconnect.googleapis.com": "google",
    "https://login.microsoftonline.com": "microsoft",
    "https://graph.microsoft.com": "microsoft",
    "https://gitlab.com": "gitlab",
    "https://discord.com": "discord",
    "https://slack.com": "slack",
    "https://www.linkedin.com": "linkedin",
    "https://api.linkedin.com": "linkedin",
    "https://www.facebook.com": "facebook",
    "https://graph.facebook.com": "facebook",
    "https://id.twitch.tv": "twitch",
    "https://github.com": "github",
    "https://api.github.com": "github-api",
    "https://appleid.apple.com": "apple",
}


@dataclass
class Grant:
    provider: str
    params: dict[str, str]
    identity: dict[str, Any]


@dataclass
class Fakes:
    port: int
    # Who signs in upstream next: sub, email, email_verified, name.
    identity: dict[str, Any] = field(default_factory=dict)
    apple_public_key: dict[str, Any] | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    signing: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "fake-1"}))
    # How the next ID tokens are forged, if at all: "other-key" (the published kid, another key),
    # "hs256" (HMAC keyed with the client secret), "none" (unsigned), "expired", "audience".
    forge: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rewrites(self) -> dict[str, str]:
        return {origin: f"{self.url}/{label}" for origin, label in REWRITES.items()}

    def refuse(self, why: str) -> Response:
        self.errors.append(why)
        return JSONResponse({"error": "invalid_request", "error_description": why}, status_code=400)

    # --- authorization ----------------------------------------------------------------------------

    def authorize(self, provider: str, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append((provider, "authorize", params))
        for name in ("client_id", "redirect_uri", "state", "code_challenge"):
            if not params.get(name):
                return self.refuse(f"{provider}: authorize without {name}")
        if params.get("response_type") != "code" or params.get("code_challenge_method") != "S256":
            return self.refuse(f"{provider}: not a code flow with S256 PKCE")
        if SHAPES[provider].oidc and provider != "github" and not params.get("nonce"):
            return self.refuse(f"{provider}: no nonce")
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(provider, params, dict(self.identity))
        answer = {"code": code, "state": params["state"]}
        if provider == "apple":
            if params.get("response_mode") != "form_post":
                return self.refuse("apple: response_mode must be form_post")
            if "name" in params.get("scope", "") and self.identity.get("first_time"):
                first, last = str(self.identity["name"]).split(" ", 1)
                user = {"name": {"firstName": first, "lastName": last}, "email": self.identity["email"]}
                answer["user"] = json.dumps(user)
            fields = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in answer.items()
            )
            page = f'<form method="post" action="{html.escape(params["redirect_uri"])}">{fields}</form>'
            return HTMLResponse(page)
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode(answer)}", status_code=302)

    # --- token ------------------------------------------------------------------------------------

    async def token(self, provider: str, request: Request) -> Response:
        form = dict(await request.form())
        self.requests.append((provider, "token", {k: str(v) for k, v in form.items()}))
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            client_id, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
        grant = self.codes.pop(str(form.get("code", "")), None)
        if form.get("grant_type") != "authorization_code" or grant is None or grant.provider != provider:
            return self.refuse(f"{provider}: unknown code")
        if client_id != grant.params["client_id"] or form.get("redirect_uri") != grant.params["redirect_uri"]:
            return self.refuse(f"{provider}: client or redirect_uri differ from the authorization")
        if provider == "apple":
            problem = self.check_apple_secret(secret, client_id)
            if problem:
                return self.refuse(problem)
        elif secret != CLIENT_SECRET:
            return self.refuse(f"{provider}: wrong client secret")
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != grant.params["code_challenge"]:
            return self.refuse(f"{provider}: PKCE verifier does not match")
        access = secrets.token_urlsafe(16)
        self.tokens[access] = grant
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
        if (SHAPES[provider].oidc and "openid" in grant.params.get("scope", "openid")) or provider == "apple":
            body["id_token"] = self.id_token(provider, grant)
        if provider == "slack":
            body["ok"] = True
        return JSONResponse(body)

    def id_token(self, provider: str, grant: Grant) -> str:
        who = grant.identity
        now = int(time.time())
        claims = {
            "iss": "https://appleid.apple.com" if provider == "apple" else f"{self.url}/{provider}",
            "aud": grant.params["client_id"],
            "sub": who["sub"],
            "iat": now,
            "exp": now + 600,
            "nonce": grant.params.get("nonce"),
            "email": who["email"],
        }
        if provider == "apple":
            claims["email_verified"] = "true" if who.get("email_verified") else "false"
            if who.get("private_relay"):
                claims["is_private_email"] = "true"
        elif provider == "microsoft":
            claims["xms_edov"] = bool(who.get("email_verified"))
        else:
            claims["email_verified"] = bool(who.get("email_verified"))
        if self.forge == "expired":
            claims["exp"] = now - 3600
        if self.forge == "audience":
            claims["aud"] = "someone-else"
        if self.forge == "other-key":
            return jwt.encode({"alg": "RS256", "kid": "fake-1"}, claims, RSAKey.generate_key(2048))
        if self.forge == "hs256":
            return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET.encode() * 2))
        if self.forge == "none":
            encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
            return f"{encode({'alg': 'none'})}.{encode(claims)}."
        return jwt.encode({"alg": "RS256", "kid": "fake-1"}, claims, self.signing)

    def check_apple_secret(self, secret: str, client_id: str) -> str | None:
        """Apple's check of the client secret: an ES256 JWT by the team's key, for this client."""
        if self.apple_public_key is None:
            return "apple: no public key registered"
        try:
            decoded = jwt.decode(secret, ECKey.import_key(self.apple_public_key), algorithms=["ES256"])
        except Exception as exc:
            return f"apple: client secret not signed by the team's key ({exc})"
        claims, header = decoded.claims, decoded.header
        now = time.time()
        expected = {"iss": APPLE_TEAM, "sub": client_id, "aud": "https://appleid.apple.com"}
        if header.get("kid") != APPLE_KEY_ID or any(claims.get(k) != v for k, v in expected.items()):
            return f"apple: client secret claims are wrong: {header} {claims}"
        if not claims.get("iat", now + 1) <= now < claims.get("exp", 0) <= now + 180 * 86400:
            return "apple: client secret outside its lifetime"
        return None

    # --- user info --------------------------------------------------------------------------------

    def bearer(self, request: Request) -> Grant | None:
        auth = request.headers.get("authorization", "")
        return self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

    def userinfo(self, provider: str, request: Request) -> Response:
        grant = self.bearer(request)
        self.requests.append((provider, "userinfo", dict(request.query_params)))
        if grant is None or grant.provider != provider:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        who = grant.identity
        if provider == "discord":
            body = {"id": who["sub"], "username": "u", "global_name": who["name"], "email": who["email"]}
            body["verified"] = bool(who.get("email_verified"))
        elif provider == "facebook":
            if request.query_params.get("fields") != "id,name,email,picture":
                return self.refuse("facebook: fields not asked")
            body = {"id": who["sub"], "name": who["name"], "picture": {"data": {"url": "https://x/p.png"}}}
            if who.get("email_verified"):
                body["email"] = who["email"]
        else:
            if provider == "twitch" and request.headers.get("client-id") != grant.params["client_id"]:
                return self.refuse("twitch: no Client-Id header")
            body = {"sub": who["sub"], "email": who["email"], "name": who["name"]}
            if provider == "twitch":
                body["preferred_username"] = who["name"]
            if provider != "microsoft":
                body["email_verified"] = bool(who.get("email_verified"))
        return JSONResponse(body)

    def github_api(self, request: Request) -> Response:
        grant = self.bearer(request)
        path = request.url.path
        self.requests.append(("github", path, {}))
        if grant is None or request.headers.get("accept") != "application/vnd.github+json":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        who = grant.identity
        if path.endswith("/user/emails"):
            return JSONResponse(
                [
                    {"email": "other@example.net", "primary": False, "verified": True, "visibility": None},
                    {
                        "email": who["email"],
                        "primary": True,
                        "verified": bool(who.get("email_verified")),
                        "visibility": "private",
                    },
                ]
            )
        return JSONResponse({"id": int(who["sub"]), "login": "octo", "name": who["name"], "avatar_url": None})

    def app(self) -> Starlette:
        routes: list[Route] = []
        for provider, shape in SHAPES.items():
            routes.append(Route(shape.authorize, self._bind(self.authorize, provider), methods=["GET"]))
            routes.append(Route(shape.token, self._bind_async(self.token, provider), methods=["POST"]))
            if shape.userinfo:
                routes.append(Route(shape.userinfo, self._bind(self.userinfo, provider), methods=["GET"]))
        routes.append(Route("/github-api/user", self.github_api, methods=["GET"]))
        routes.append(Route("/github-api/user/emails", self.github_api, methods=["GET"]))
        keys = KeySet([self.signing]).as_dict(private=False)
        routes.append(Route("/apple/auth/keys", lambda _: JSONResponse(keys), methods=["GET"]))
        return Starlette(routes=routes)

    @staticmethod
    def _bind(handler: Any, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            result: Response = handler(provider, request)
            return result

        return endpoint

    @staticmethod
    def _bind_async(handler: Any, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            result: Response = await handler(provider, request)
            return result

        return endpoint


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    """The fake providers on a local port, in a thread of this process, for the block's duration."""
    fakes = Fakes(free_port())
    server = uvicorn.Server(
        uvicorn.Config(fakes.app(), host="127.0.0.1", port=fakes.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the fake providers did not start"
        time.sleep(0.05)
    try:
        yield fakes
    finally:
        server.should_exit = True
        thread.join(10)
