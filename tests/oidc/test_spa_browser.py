"""A single-page app in a real browser (Debian's Chromium through Playwright): a page served from
its own registered origin runs the authorization code flow with PKCE, then redeems the code,
refreshes and calls userinfo with `fetch`, which the browser allows only because the provider
answers CORS for that origin (decision 28). The same calls from an unregistered origin are blocked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.oidc.helpers import PASSWORD, Realm, unverified_claims
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

EMAIL = "katherine@example.com"

# The app: on "/" it starts the flow, on "/callback" it finishes it with fetch, on "/probe" it only
# tries userinfo with the token in the fragment. Results land in window.spaResult for the test.
APP = """<!doctype html>
<meta charset="utf-8"><title>SPA</title><h1>SPA</h1><pre id="out">pending</pre>
<script>
const cfg = __CONFIG__;
const report = (value) => {
  window.spaResult = value;
  document.getElementById("out").textContent = JSON.stringify(value);
};
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));

async function start() {
  const verifier = random(), state = random(), nonce = random();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem("flow", JSON.stringify({verifier, state, nonce}));
  const query = new URLSearchParams({
    client_id: cfg.client_id, redirect_uri: cfg.redirect_uri, response_type: "code",
    scope: "openid profile email", state, nonce,
    code_challenge: b64url(digest), code_challenge_method: "S256",
  });
  location.assign(`${cfg.issuer}/authorize?${query}`);
}

async function postForm(url, fields) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams(fields),
  });
  return {status: response.status, body: await response.json()};
}

async function userinfo(token) {
  // The Authorization header makes this a preflighted request.
  const response = await fetch(`${cfg.issuer}/userinfo`, {headers: {Authorization: `Bearer ${token}`}});
  return {
    status: response.status,
    challenge: response.headers.get("WWW-Authenticate"),
    body: await response.json(),
  };
}

async function finish() {
  const flow = JSON.parse(sessionStorage.getItem("flow"));
  const params = new URLSearchParams(location.search);
  if (params.get("state") !== flow.state) return report({error: "state mismatch"});
  const exchanged = await postForm(`${cfg.issuer}/token`, {
    grant_type: "authorization_code", code: params.get("code"), redirect_uri: cfg.redirect_uri,
    client_id: cfg.client_id, code_verifier: flow.verifier,
  });
  const refreshed = await postForm(`${cfg.issuer}/token`, {
    grant_type: "refresh_token", refresh_token: exchanged.body.refresh_token, client_id: cfg.client_id,
  });
  report({
    nonce: flow.nonce,
    exchanged,
    refreshed,
    userinfo: await userinfo(refreshed.body.access_token),
    rejected: await userinfo("not-a-token"),
  });
}

async function probe() {
  try {
    report({userinfo: await userinfo(location.hash.slice(1))});
  } catch (error) {
    report({blocked: error.name});
  }
}

const run = {"/": start, "/callback": finish, "/probe": probe}[location.pathname];
run().catch((error) => report({error: String(error)}));
</script>
"""


@contextmanager
def spa_server(issuer: str) -> Iterator[tuple[str, Any]]:
    """Serve the app on a free loopback port; yields its origin and a setter for its client ID."""
    config: dict[str, str] = {"issuer": issuer}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    config["redirect_uri"] = f"{origin}/callback"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = APP.replace("__CONFIG__", json.dumps(config)).encode()
            known = urlsplit(self.path).path in ("/", "/callback", "/probe")
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin, config
    finally:
        server.shutdown()
        server.server_close()


async def test_spa_redeems_refreshes_and_reads_userinfo_with_fetch(realm: Realm) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    with spa_server(realm.url) as (origin, config), spa_server(realm.url) as (stranger, _):
        client = await realm.client("spa", redirect_uris=[config["redirect_uri"]])
        config["client_id"] = client.id
        user = await realm.user(EMAIL, first_name="Katherine")

        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await chromium.new_page()
                page.set_default_timeout(20_000)
                await page.goto(f"{origin}/")
                await page.get_by_label("Email or username").fill(EMAIL)
                await page.get_by_role("button", name="Continue").click()
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(f"{origin}/callback?**")
                await page.wait_for_function("window.spaResult !== undefined")
                result = await page.evaluate("window.spaResult")
                assert "error" not in result, result

                access = result["refreshed"]["body"]["access_token"]
                await page.goto(f"{stranger}/probe#{access}")
                await page.wait_for_function("window.spaResult !== undefined")
                blocked = await page.evaluate("window.spaResult")
            finally:
                await chromium.close()

    exchanged, refreshed = result["exchanged"], result["refreshed"]
    assert exchanged["status"] == 200, exchanged
    id_token = unverified_claims(exchanged["body"]["id_token"])
    assert id_token["sub"] == user.id and id_token["nonce"] == result["nonce"]
    assert refreshed["status"] == 200, refreshed
    assert refreshed["body"]["refresh_token"] != exchanged["body"]["refresh_token"]
    assert result["userinfo"]["status"] == 200, result["userinfo"]
    assert result["userinfo"]["body"]["sub"] == user.id
    assert result["userinfo"]["body"]["email"] == EMAIL
    # Page code can read a refusal and its challenge (exposed to the page through CORS).
    rejected = result["rejected"]
    assert rejected["status"] == 401 and rejected["body"]["error"] == "invalid_token", rejected
    assert rejected["challenge"].startswith("Bearer ") and 'error="invalid_token"' in rejected["challenge"]
    # The very same call from an origin the issuer does not know is blocked by the browser.
    assert blocked == {"blocked": "TypeError"}, blocked
