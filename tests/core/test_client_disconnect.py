"""A client that hangs up in the middle of its request body is routine (a closed tab, a dropped
mobile connection): the server logs no error for it, on any route that reads a body, and goes on
serving."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import urlsplit

import httpx
import pytest
from authpi_admin.generated.models import Issuer

from tests.harness import RunningServer

pytestmark = pytest.mark.anyio

FORM = "application/x-www-form-urlencoded"
# Every IdP route that reads a form body.
IDP_ENDPOINTS = [
    "token",
    "revoke",
    "introspect",
    "userinfo",
    "authorize",
    "login",
    "login/password",
    "signup",
    "consent",
    "select-account",
    "logout",
]


async def hang_up_mid_body(server: RunningServer, path: str, content_type: str, *extra: str) -> None:
    """Send the head and part of a declared body, then close the connection."""
    parts = urlsplit(server.url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Type: {content_type}", *extra]
    head = "\r\n".join([*lines, "Content-Length: 4000", "", ""]).encode()
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head + b"grant_type=client_credentials&scope=")
    await writer.drain()
    await asyncio.sleep(0.3)  # the application is now reading the body
    writer.close()
    await writer.wait_closed()


async def test_hanging_up_mid_body_logs_no_error(server: RunningServer, issuer: Issuer) -> None:
    logged_before = len(server.tracebacks())
    credentials = base64.b64encode(f"{server.key_id}:{server.key_secret}".encode()).decode()
    hang_ups = [
        hang_up_mid_body(
            server,
            f"/v1/accounts/{server.account_id}/issuers",
            "application/json",
            f"Authorization: Basic {credentials}",
        ),
        *(hang_up_mid_body(server, f"/{issuer.id}/{endpoint}", FORM) for endpoint in IDP_ENDPOINTS),
    ]
    await asyncio.gather(*hang_ups)
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        discovery = await http.get(f"/{issuer.id}/.well-known/openid-configuration")
    assert discovery.status_code == 200
    assert server.tracebacks()[logged_before:] == []
