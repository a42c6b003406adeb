"""The browser side of a sign-in at the peer (bench/peer/server.js), with httpx, and its refresh-token
pools: what bench/flows.py and bench/seed.py do for AuthPI.

The peer's interaction page approves at once (see server.js), so a sign-in is
``/auth`` -> ``/interaction/<uid>`` -> ``/auth/<uid>`` -> ``redirect_uri?code=...`` followed by the code
exchange at ``/token`` (client_secret_basic, PKCE S256): the same authorization-code flow as
AuthPI's, without the password step. A browser that is already signed in (its session cookie, and
the grant the first consent stored) gets a code from ``/auth`` straight away.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench.flows import FlowError, Tokens, _pkce

PEER_USER = "bench-user"


@dataclass(frozen=True)
class PeerWebClient:
    url: str  # http://127.0.0.1:PORT
    client_id: str
    client_secret: str
    redirect_uri: str

    def line(self, refresh_token: str) -> str:
        """A line of the pool file lua/refresh.lua reads."""
        return f"{self.client_id} {self.client_secret} {refresh_token}"


class PeerBrowser:
    def __init__(self, client: PeerWebClient, timeout: float = 60.0) -> None:
        self.client = client
        self.http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=4.0),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def authorize(self, user: str = PEER_USER) -> tuple[str, str]:
        """Through /auth and the interaction (when not signed in yet) to a code; returns
        (code, code_verifier)."""
        verifier, challenge = _pkce()
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
                "login_hint": user,
            }
        )
        url = f"{self.client.url}/auth?{query}"
        for _ in range(6):
            r = await self.http.get(url)
            if r.status_code not in (302, 303):
                raise FlowError(f"peer {urlsplit(url).path}: {r.status_code} {r.text[:300]}")
            location = r.headers["location"]
            if location.startswith(self.client.redirect_uri):
                params = parse_qs(urlsplit(location).query)
                if "code" not in params:
                    raise FlowError(f"peer: no code in {location[:300]}")
                return params["code"][0], verifier
            url = location if location.startswith("http") else self.client.url + location
        raise FlowError("peer: too many redirects before the code")

    async def exchange(self, code: str, verifier: str) -> Tokens:
        r = await self.http.post(
            f"{self.client.url}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.client.redirect_uri,
                "code_verifier": verifier,
            },
            auth=(self.client.client_id, self.client.client_secret),
        )
        if r.status_code != 200:
            raise FlowError(f"peer code exchange: {r.status_code} {r.text[:300]}")
        body = r.json()
        return Tokens(body["access_token"], body.get("refresh_token"), body.get("id_token"))


async def sign_in(client: PeerWebClient) -> Tokens:
    browser = PeerBrowser(client)
    try:
        code, verifier = await browser.authorize()
        tokens = await browser.exchange(code, verifier)
    finally:
        await browser.aclose()
    if not tokens.refresh_token:
        raise FlowError("the peer's code exchange gave no refresh token")
    return tokens


async def minted_pool(client: PeerWebClient, bench_secret: str, count: int) -> tuple[list[str], float]:
    """``count`` refresh tokens cloned inside the peer (POST /bench/mint) from one real sign-in's
    token: each clone is a copy of that token's grant and refresh-token records written through the
    peer's own adapter, as its token endpoint writes them (the same shortcut as AuthPI's pool)."""
    started = time.monotonic()
    template = await sign_in(client)
    async with httpx.AsyncClient(timeout=300) as http:
        r = await http.post(
            f"{client.url}/bench/mint",
            json={"refresh_token": template.refresh_token, "count": count},
            headers={"x-bench-secret": bench_secret},
        )
    if r.status_code != 200:
        raise FlowError(f"peer mint: {r.status_code} {r.text[:300]}")
    tokens: list[str] = r.json()["refresh_tokens"]
    return [client.line(t) for t in tokens], time.monotonic() - started


async def http_pool(client: PeerWebClient, count: int, concurrency: int = 12) -> tuple[list[str], float]:
    """``count`` refresh tokens each from its own code exchange: every generator signs in once, then
    asks /auth for new codes with its session cookie (two requests per token)."""
    started = time.monotonic()
    lines: list[str] = []
    remaining = [count]

    async def generator() -> None:
        browser = PeerBrowser(client)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                code, verifier = await browser.authorize()
                tokens = await browser.exchange(code, verifier)
                if tokens.refresh_token:
                    lines.append(client.line(tokens.refresh_token))
        finally:
            await browser.aclose()

    await asyncio.gather(*(generator() for _ in range(concurrency)))
    return lines[:count], time.monotonic() - started


async def check_pool(client: PeerWebClient, line: str) -> None:
    """Spend one pool token over HTTP: it must rotate (200 with a new refresh token), and the old one
    must then be refused (rotation is on)."""
    client_id, secret, token = line.split(" ")
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{client.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(client_id, secret),
        )
        if r.status_code != 200 or r.json().get("refresh_token") in (None, token):
            raise FlowError(f"peer pool token not rotated: {r.status_code} {r.text[:300]}")
        again = await http.post(
            f"{client.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(client_id, secret),
        )
        if again.status_code != 400:
            raise FlowError(f"peer accepted a rotated refresh token again: {again.status_code}")
