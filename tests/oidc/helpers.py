"""Shared pieces of the OpenID Connect end-to-end suite.

* :class:`Browser` drives the hosted pages over HTTP the way a browser would: it keeps cookies,
  submits forms with their hidden fields (CSRF token, request ID), follows redirects that stay on
  the server and stops at the first one that leaves it, i.e. the client's redirect URI, so no
  callback listener is needed.
* :class:`Realm` is one issuer of the running server, shaped through the official admin SDK, with
  shortcuts for authorization requests and the token endpoint.
* ``verify_*`` check the provider's JWTs with joserfc against the published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
from authpi_admin import AuthPIAdmin
from authpi_admin.generated.models import IssuerClientsCreateResponse as Client
from authpi_admin.generated.models import PublicSession, User
from authpi_admin.generated.scopes.issuer_scope import IssuerScope
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.harness import RunningServer

PASSWORD = "correct horse battery staple"
# Redirect targets are never contacted: the driver stops at the redirect that points to them.
CALLBACK = "http://127.0.0.1:9/callback"
OTHER_CALLBACK = "http://127.0.0.1:9/other-callback"
LOGOUT_CALLBACK = "http://127.0.0.1:9/signed-out"
DEFAULT_SCOPE = "openid profile email"
ALGORITHMS = ("ES256", "EdDSA", "RS256")


# --- hosted pages ---------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    hidden: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append(Form(found.get("action") or ""))
        elif tag == "input" and self.forms and found.get("type") == "hidden" and found.get("name"):
            self.forms[-1].hidden[str(found["name"])] = found.get("value") or ""


def forms(page: httpx.Response) -> list[Form]:
    parser = _FormParser()
    parser.feed(page.text)
    return parser.forms


def form(page: httpx.Response, action_suffix: str = "") -> Form:
    """The page's (only, or first matching) POST form."""
    found = [f for f in forms(page) if f.action.split("?")[0].endswith(action_suffix)]
    assert found, f"no form ending in {action_suffix!r} on {page.url}:\n{page.text[:800]}"
    return found[0]


def _text(page: httpx.Response, pattern: str) -> str | None:
    match = re.search(pattern, page.text, re.S)
    return html.unescape(match.group(1)).strip() if match else None


def error_text(page: httpx.Response) -> str | None:
    """The form error a hosted page shows (``<p class="error">``), if any."""
    return _text(page, r'<p class="error"[^>]*>(.*?)</p>')


def heading(page: httpx.Response) -> str | None:
    return _text(page, r"<h1>(.*?)</h1>")


def describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.url} -> {response.status_code} {response.text[:600]}"


def is_page(response: httpx.Response, page: str) -> bool:
    """Whether the response is the hosted page ``/{issuer_id}/{page}``, e.g. ``login``."""
    return response.status_code == 200 and response.url.path.rsplit("/", 1)[-1] == page


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def redirect_target(response: httpx.Response) -> str:
    """Where a 303 from the provider sends the browser, asserting that it leaves the server."""
    assert response.status_code in (302, 303), describe(response)
    target = urljoin(str(response.url), response.headers["location"])
    assert _origin(target) != _origin(str(response.url)), f"redirect stayed on the server: {target}"
    return target


def callback_params(response: httpx.Response) -> dict[str, str]:
    """The query the provider redirected the browser to the client with (code or error, state, iss)."""
    return dict(parse_qsl(urlsplit(redirect_target(response)).query, keep_blank_values=True))


class Browser:
    """A cookie-keeping HTTP client that behaves like a browser on the hosted pages."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.http = httpx.AsyncClient(timeout=30, follow_redirects=False)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _follow(self, response: httpx.Response) -> httpx.Response:
        for _ in range(10):
            if not response.is_redirect:
                return response
            target = urljoin(str(response.url), response.headers["location"])
            if _origin(target) != _origin(str(response.url)):
                return response  # off to the client: the caller inspects the redirect
            response = await self.http.get(target)
        raise AssertionError(f"redirect loop at {response.url}")

    async def get(self, url: str) -> httpx.Response:
        """Open a URL, following redirects within the server."""
        return await self._follow(await self.http.get(url))

    async def submit(
        self, page: httpx.Response, fields: dict[str, str], *, action_suffix: str = ""
    ) -> httpx.Response:
        """Submit a form of ``page``: its hidden fields plus ``fields``, as a browser would."""
        chosen = form(page, action_suffix)
        target = urljoin(str(page.url), chosen.action)
        return await self._follow(await self.http.post(target, data={**chosen.hidden, **fields}))

    async def password_page(self, authorize_url: str, username: str) -> httpx.Response:
        """Open the authorization URL and get past the identifier step."""
        login = await self.get(authorize_url)
        assert is_page(login, "login"), describe(login)
        page = await self.submit(login, {"username": username})
        assert page.status_code == 200 and form(page, "/login/password"), describe(page)
        return page

    async def sign_in(self, authorize_url: str, username: str, password: str = PASSWORD) -> httpx.Response:
        """Identifier, then password; returns whatever follows the password step."""
        page = await self.password_page(authorize_url, username)
        return await self.submit(page, {"password": password})

    async def visit(self, authorize_url: str, username: str, password: str = PASSWORD) -> httpx.Response:
        """Open the authorization URL and sign in only if the login page appears (else it is SSO)."""
        response = await self.get(authorize_url)
        if is_page(response, "login"):
            page = await self.submit(response, {"username": username})
            response = await self.submit(page, {"password": password})
        return response

    @property
    def session_cookie(self) -> str | None:
        return next((c.value for c in self.http.cookies.jar if c.name == "authpi_session"), None)


# --- authorization requests and tokens ------------------------------------------------------------


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class AuthRequest:
    """One /authorize request and the secrets the client keeps for its callback."""

    url: str
    redirect_uri: str
    state: str
    nonce: str
    verifier: str | None


@dataclass
class Realm:
    """One issuer of a running server, with a password method, shaped through the admin SDK."""

    admin: AuthPIAdmin
    server_url: str
    id: str

    @property
    def url(self) -> str:
        """The issuer URL (``iss``)."""
        return f"{self.server_url}/{self.id}"

    @property
    def api(self) -> IssuerScope:
        return self.admin.issuer(self.id)

    async def client(
        self,
        type: str = "web",
        *,
        scopes: list[str] | None = None,
        redirect_uris: list[str] | None = None,
        **openid: Any,
    ) -> Client:
        """A client of this issuer; ``openid`` goes to ``settings.openid`` (e.g. response_signature_alg)."""
        body: dict[str, Any] = {"name": f"{type}-{secrets.token_hex(3)}", "type": type}
        if scopes is not None:
            body["scopes"] = scopes
        if type != "m2m":
            openid = {
                "redirect_uris": redirect_uris or [CALLBACK],
                "post_logout_redirect_uris": [LOGOUT_CALLBACK],
                **openid,
            }
        if openid:
            body["settings"] = {"openid": openid}
        return await self.api.clients.create(body)

    async def user(self, username: str, password: str = PASSWORD, **profile: Any) -> User:
        body = {"username_type": "email", "username": username, "password": password, "profile": profile}
        return await self.api.users.create(body)

    async def sessions(self, user_id: str) -> list[PublicSession]:
        return (await self.api.user(user_id).sessions.list()).data

    def request(
        self,
        client_id: str,
        *,
        redirect_uri: str = CALLBACK,
        scope: str = DEFAULT_SCOPE,
        pkce: bool = True,
        **extra: str,
    ) -> AuthRequest:
        """An authorization URL with state, nonce and (by default) an S256 PKCE challenge."""
        state, nonce = random_token(), random_token()
        verifier = random_token(48) if pkce else None
        params: list[tuple[str, str]] = [
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", scope),
            ("state", state),
            ("nonce", nonce),
        ]
        if verifier:
            params += [("code_challenge", s256(verifier)), ("code_challenge_method", "S256")]
        params += list(extra.items())
        url = f"{self.url}/authorize?{urlencode(params)}"
        return AuthRequest(url, redirect_uri, state, nonce, verifier)

    async def post(
        self, endpoint: str, data: dict[str, Any], auth: httpx.Auth | None = None
    ) -> httpx.Response:
        """POST a form to ``{issuer}/{endpoint}``."""
        async with httpx.AsyncClient(timeout=30, auth=auth) as http:
            return await http.post(f"{self.url}/{endpoint}", data=data)

    async def token(self, client: Client, **form: Any) -> httpx.Response:
        """POST /token as ``client``: Basic when it has a secret, else ``client_id`` in the body."""
        if not client.secret:
            form.setdefault("client_id", client.id)
        return await self.post("token", form, basic(client))

    async def exchange(self, client: Client, code: str, request: AuthRequest, **extra: Any) -> httpx.Response:
        form: dict[str, Any] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": request.redirect_uri,
        }
        if request.verifier:
            form["code_verifier"] = request.verifier
        return await self.token(client, **{**form, **extra})

    async def refresh(self, client: Client, refresh_token: str, **extra: Any) -> httpx.Response:
        return await self.token(client, grant_type="refresh_token", refresh_token=refresh_token, **extra)

    async def introspect(self, client: Client, token: str) -> dict[str, Any]:
        response = await self.post("introspect", {"token": token}, basic(client))
        assert response.status_code == 200, describe(response)
        body: dict[str, Any] = response.json()
        return body

    async def code(
        self, browser: Browser, client: Client, username: str, **request: Any
    ) -> tuple[str, AuthRequest]:
        """Sign in (or reuse the browser's session) and return an authorization code."""
        auth = self.request(client.id, **request)
        params = callback_params(await browser.visit(auth.url, username))
        assert "code" in params and params["state"] == auth.state, params
        return params["code"], auth

    async def tokens(self, client: Client, username: str, **request: Any) -> dict[str, Any]:
        """A full sign-in in a fresh browser, exchanged for tokens."""
        async with Browser(self.server_url) as browser:
            code, auth = await self.code(browser, client, username, **request)
        response = await self.exchange(client, code, auth)
        assert response.status_code == 200, describe(response)
        body: dict[str, Any] = response.json()
        return body


def basic(client: Client) -> httpx.BasicAuth | None:
    """client_secret_basic for a confidential client; nothing for a public one."""
    return httpx.BasicAuth(client.id, client.secret) if client.secret else None


async def new_realm(admin: AuthPIAdmin, server: RunningServer, *, signup: bool = False) -> Realm:
    """A fresh issuer with the password method, so every test owns its own users and keys."""
    issuer = await admin.issuers.create({"name": f"oidc-{secrets.token_hex(4)}"})
    await admin.issuer(issuer.id).auth_methods.create(
        {
            "name": "Password",
            "method": "password",
            "first_factor_only": True,
            "settings": {},
            "enabled_signup": signup,
        }
    )
    return Realm(admin, server.url, issuer.id)


@asynccontextmanager
async def realm_on(server: RunningServer, *, signup: bool = False) -> AsyncIterator[Realm]:
    """A fresh realm on a dedicated server (one started with non-default settings)."""
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        yield await new_realm(admin, server, signup=signup)


def error_of(response: httpx.Response) -> str:
    """The OAuth ``error`` code of a JSON error response."""
    assert response.headers.get("content-type", "").startswith("application/json"), describe(response)
    error = response.json().get("error")
    assert isinstance(error, str), describe(response)
    return error


# --- JWTs -----------------------------------------------------------------------------------------


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT without checking it (for picking out ``sid`` and the like)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


async def fetch_jwks(jwks_uri: str) -> KeySet:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(jwks_uri)
    assert response.status_code == 200, describe(response)
    return KeySet.import_key_set(response.json())


def token_hash(value: str, alg: str) -> str:
    """OIDC ``at_hash``: left half of the hash matching the signing alg (SHA-512 for Ed25519)."""
    digest = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    raw = digest(value.encode()).digest()
    return base64.urlsafe_b64encode(raw[: len(raw) // 2]).rstrip(b"=").decode()


def _verify(token: str, keys: KeySet, alg: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    decoded = jwt.decode(token, keys, algorithms=[alg])  # the signature, by kid
    header, claims = dict(decoded.header), dict(decoded.claims)
    assert header["alg"] == alg and header.get("kid"), header
    registry = jwt.JWTClaimsRegistry(exp={"essential": True}, iat={"essential": True}, **options)
    registry.validate(claims)  # iss / aud / exp (in the future) / nonce as given
    assert claims["exp"] > time.time() and claims["iat"] <= time.time() + 5, claims
    return header, claims


def verify_id_token(
    token: str,
    keys: KeySet,
    alg: str,
    *,
    iss: str,
    client_id: str,
    nonce: str | None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """An ID token as an RP must check it (OIDC Core §3.1.3.7), plus AuthPI's own claims."""
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": iss},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    header, claims = _verify(token, keys, alg, **options)
    assert "typ" not in header, header
    assert claims["aud"] == client_id and claims.get("azp", client_id) == client_id
    assert isinstance(claims["sid"], str) and claims["sid"].startswith("s_"), claims
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert claims["organizations"] == []
    if "at_hash" in claims:
        assert access_token is not None and claims["at_hash"] == token_hash(access_token, alg), claims
    return claims


def verify_access_token(
    token: str,
    keys: KeySet,
    alg: str,
    *,
    iss: str,
    client_id: str,
    scope: str,
    aud: str | list[str] | None = None,
) -> dict[str, Any]:
    """An RFC 9068 access token of a user (``aud`` defaults to the client ID)."""
    expected_aud = client_id if aud is None else aud
    audiences = [expected_aud] if isinstance(expected_aud, str) else expected_aud
    header, claims = _verify(
        token,
        keys,
        alg,
        iss={"essential": True, "value": iss},
        aud={"essential": True, "values": audiences},
        sub={"essential": True},
        jti={"essential": True},
    )
    assert header["typ"] == "at+jwt", header
    assert claims["aud"] == expected_aud, claims
    assert re.fullmatch(r"[A-Za-z0-9]{18}", claims["jti"]), claims
    assert isinstance(claims["sid"], str) and claims["sid"].startswith("s_"), claims
    assert claims["client_id"] == client_id
    assert claims["dat"] == {"type": "identity"}
    assert claims["scope"] == scope
    assert claims["organizations"] == []
    return claims
