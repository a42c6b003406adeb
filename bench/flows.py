"""Browser-side OIDC flows against an AuthPI issuer, with httpx: the hosted password login
(authorize → login page → identifier → password → code) and the code exchange.

Each ``Browser`` is one long-lived httpx client (its own cookie jar): reusing it keeps the driver's
own CPU cost low; ``forget()`` drops its cookies so the next login starts signed out.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_REQUEST = re.compile(r'name="request" value="([^"]+)"')


class FlowError(RuntimeError):
    pass


@dataclass(frozen=True)
class WebClient:
    issuer_url: str  # http://127.0.0.1:PORT/i_...
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    id_token: str | None


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Browser:
    def __init__(
        self, client: WebClient, timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.client = client
        base = urlsplit(client.issuer_url)
        self.origin = f"{base.scheme}://{base.netloc}"
        self.http = httpx.AsyncClient(
            timeout=timeout,
            # Idle connections are dropped before the server's 5 s keep-alive ends, so a request
            # never races the server closing the connection it reuses.
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=4.0),
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def forget(self) -> None:
        self.http.cookies.clear()

    def _authorize_url(self, challenge: str) -> str:
        query = urlencode(
            {
                "client_id": self.client.client_id,
                "redirect_uri": self.client.redirect_uri,
                "response_type": "code",
                "scope": "openid profile email",
                "state": secrets.token_urlsafe(12),
                "nonce": secrets.token_urlsafe(12),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.client.issuer_url}/authorize?{query}"

    def _code_from(self, response: httpx.Response) -> str:
        if response.status_code != 303:
            raise FlowError(f"expected a redirect with a code, got {response.status_code}: {response.text[:300]}")
        location = response.headers["location"]
        if not location.startswith(self.client.redirect_uri):
            raise FlowError(f"unexpected redirect {location[:200]}")
        params = parse_qs(urlsplit(location).query)
        if "code" not in params:
            raise FlowError(f"no code in {location[:300]}")
        return params["code"][0]

    async def login(self, username: str, password: str) -> tuple[str, str]:
        """The whole hosted password login; returns (code, code_verifier)."""
        verifier, challenge = _pkce()
        r = await self.http.get(self._authorize_url(challenge))
        if r.status_code != 303:
            raise FlowError(f"authorize: {r.status_code} {r.text[:300]}")
        r = await self.http.get(self.origin + r.headers["location"])
        if r.status_code != 200:
            raise FlowError(f"login page: {r.status_code} {r.text[:300]}")
        csrf_match, request_match = _CSRF.search(r.text), _REQUEST.search(r.text)
        if not csrf_match or not request_match:
            raise FlowError("login page without csrf/request fields")
        fields = {"csrf": csrf_match.group(1), "request": request_match.group(1), "username": username}
        base = self.client.issuer_url
        r = await self.http.post(f"{base}/login", data=fields)
        if r.status_code != 200:
            raise FlowError(f"identifier step: {r.status_code} {r.text[:300]}")
        r = await self.http.post(f"{base}/login/password", data={**fields, "password": password})
        return self._code_from(r), verifier

    async def authorize_signed_in(self) -> tuple[str, str]:
        """A new code for a browser that already holds a session cookie (no password step)."""
        verifier, challenge = _pkce()
        r = await self.http.get(self._authorize_url(challenge))
        return self._code_from(r), verifier

    async def exchange(self, code: str, verifier: str) -> Tokens:
        r = await self.http.post(
            f"{self.client.issuer_url}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.client.redirect_uri,
                "code_verifier": verifier,
            },
            auth=(self.client.client_id, self.client.client_secret),
        )
        if r.status_code != 200:
            raise FlowError(f"code exchange: {r.status_code} {r.text[:300]}")
        body = r.json()
        return Tokens(body["access_token"], body.get("refresh_token"), body.get("id_token"))
