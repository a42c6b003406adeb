"""A real browser (Debian's Chromium through Playwright) signs in on the hosted pages for a public
SPA client using PKCE; the SPA's redirect URI is a tiny local HTTP server that records the callback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.oidc.helpers import PASSWORD, Realm, describe, fetch_jwks, verify_id_token

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EMAIL = "margaret@example.com"


@dataclass
class SpaCallback:
    redirect_uri: str
    received: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def spa_callback_server() -> Iterator[SpaCallback]:
    """Serve ``/spa/callback`` on a free loopback port and record every query it receives."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    spa = SpaCallback(f"http://127.0.0.1:{server.server_address[1]}/spa/callback")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/spa/callback":
                spa.received.append(dict(parse_qsl(parts.query)))
            body = b"<!doctype html><title>SPA</title><h1>Signed in</h1>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield spa
    finally:
        server.shutdown()
        server.server_close()


async def test_spa_signs_in_with_pkce_in_chromium(realm: Realm, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    with spa_callback_server() as spa:
        client = await realm.client("spa", redirect_uris=[spa.redirect_uri])
        assert client.confidential is False and client.secret is None
        user = await realm.user(EMAIL, first_name="Margaret")
        auth = realm.request(client.id, redirect_uri=spa.redirect_uri)

        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await chromium.new_page()
                page.set_default_timeout(20_000)
                await page.goto(auth.url)
                await page.get_by_label("Email or username").wait_for()
                assert page.url.startswith(f"{realm.url}/login?request=")
                screenshot = tmp_path / "login.png"
                await page.screenshot(path=str(screenshot), full_page=True)
                assert screenshot.stat().st_size > 0

                await page.get_by_label("Email or username").fill(EMAIL)
                await page.get_by_role("button", name="Continue").click()
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(f"{spa.redirect_uri}?**")
                assert await page.get_by_role("heading").inner_text() == "Signed in"

                cookies = {c["name"]: c for c in await page.context.cookies(realm.url + "/")}
                session = cookies["authpi_session"]
                assert session["path"] == f"/{realm.id}" and session["httpOnly"] is True
                assert session["sameSite"] == "Lax"
            finally:
                await chromium.close()

        assert len(spa.received) == 1
        callback = spa.received[0]
        assert callback["state"] == auth.state and callback["iss"] == realm.url

    # The SPA redeems the code with its verifier and client_id only: no secret.
    response = await realm.exchange(client, callback["code"], auth)
    assert response.status_code == 200, describe(response)
    tokens = response.json()
    keys = await fetch_jwks(f"{realm.url}/jwks.json")
    claims = verify_id_token(
        tokens["id_token"],
        keys,
        "ES256",
        iss=realm.url,
        client_id=client.id,
        nonce=auth.nonce,
        access_token=tokens["access_token"],
    )
    assert claims["sub"] == user.id and claims["email"] == EMAIL
