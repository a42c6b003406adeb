"""Limits on what a request may make the server read before anyone is authenticated: the body
(declared or streamed) and the request head (size and number of headers), each answered in the
envelope of the part of the server it was sent to, with the worker's memory staying flat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.core.conftest import assert_error_envelope
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
PIECE = b"x" * (64 * 1024)
# The server under test runs with the default limits: 1 MiB Core bodies, 64 KiB IdP bodies,
# 16 KiB request heads and 100 header fields.
CORE_LIMIT = MIB
FORM_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def limits_server() -> Iterator[RunningServer]:
    """A server of its own, so its peak memory reflects these requests only (no database involved)."""
    with run_server("sqlite") as running:
        yield running


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _pieces(total: int) -> AsyncIterator[bytes]:
    """``total`` bytes, made on the fly so the test never holds them."""
    sent = 0
    while sent < total:
        piece = PIECE[: total - sent]
        sent += len(piece)
        yield piece


async def _chunked(total: int) -> AsyncIterator[bytes]:
    async for piece in _pieces(total):
        yield b"%x\r\n%b\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


async def exchange(server: RunningServer, head: bytes, payload: AsyncIterator[bytes]) -> RawResponse:
    """Send ``head`` then ``payload`` on a raw socket while reading the answer, as a client that keeps
    uploading until the server answers or hangs up would (a failed send does not end the reading)."""
    parts = urlsplit(server.url)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, (parts.hostname, parts.port))

    async def upload() -> None:
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, head)
            async for piece in payload:
                await loop.sock_sendall(sock, piece)

    sending = asyncio.create_task(upload())
    received = b""
    try:
        async with asyncio.timeout(60):
            while not _complete(received):
                try:
                    data = await loop.sock_recv(sock, 65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                received += data
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        sock.close()
    head_part, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head_part.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    return RawResponse(int(status_line.split()[1]), headers, body)


def _complete(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def request_head(server: RunningServer, method: str, path: str, *headers: str) -> bytes:
    host = urlsplit(server.url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def declared(server: RunningServer, path: str, size: int, content_type: str) -> bytes:
    return request_head(server, "POST", path, f"Content-Type: {content_type}", f"Content-Length: {size}")


def streamed(server: RunningServer, path: str, content_type: str) -> bytes:
    return request_head(server, "POST", path, f"Content-Type: {content_type}", "Transfer-Encoding: chunked")


def core_path(server: RunningServer) -> str:
    return f"/v1/accounts/{server.account_id}/issuers"


FORM = "application/x-www-form-urlencoded"


def assert_core_413(response: RawResponse) -> None:
    assert response.status == 413, response
    assert response.headers["connection"] == "close"
    body = response.json()
    assert_error_envelope(body, "payload_too_large")
    assert body["retryable"] is False


def assert_oauth_413(response: RawResponse) -> None:
    assert response.status == 413, response
    assert response.headers["connection"] == "close"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_request"
    assert str(FORM_LIMIT) in response.json()["error_description"]


# --- bodies ----------------------------------------------------------------------------------------


async def test_a_declared_oversized_core_body_is_refused_unread(limits_server: RunningServer) -> None:
    head = declared(limits_server, core_path(limits_server), 512 * MIB, "application/json")
    assert_core_413(await exchange(limits_server, head, _pieces(512 * MIB)))


async def test_a_streamed_oversized_core_body_is_refused_past_the_limit(limits_server: RunningServer) -> None:
    head = streamed(limits_server, core_path(limits_server), "application/json")
    assert_core_413(await exchange(limits_server, head, _chunked(512 * MIB)))


@pytest.mark.parametrize("endpoint", ["token", "revoke", "introspect", "userinfo"])
async def test_oversized_protocol_bodies_get_an_oauth_413(
    limits_server: RunningServer, endpoint: str
) -> None:
    path = f"/i_{'0' * 24}/{endpoint}"
    head = declared(limits_server, path, 64 * MIB, FORM)
    assert_oauth_413(await exchange(limits_server, head, _pieces(64 * MIB)))
    assert_oauth_413(await exchange(limits_server, streamed(limits_server, path, FORM), _chunked(64 * MIB)))


@pytest.mark.parametrize("page", ["authorize", "login", "login/password", "signup", "consent", "logout"])
async def test_oversized_hosted_form_posts_get_an_error_page(limits_server: RunningServer, page: str) -> None:
    path = f"/i_{'0' * 24}/{page}"
    for head, payload in [
        (declared(limits_server, path, 64 * MIB, FORM), _pieces(64 * MIB)),
        (streamed(limits_server, path, FORM), _chunked(64 * MIB)),
    ]:
        response = await exchange(limits_server, head, payload)
        assert response.status == 413, response
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["x-frame-options"] == "DENY"
        assert b"Request too large" in response.body


# --- request heads ---------------------------------------------------------------------------------


async def test_a_huge_header_gets_431_and_the_connection_closes(limits_server: RunningServer) -> None:
    head = request_head(limits_server, "GET", "/healthz").removesuffix(b"\r\n\r\n") + b"\r\nX-Huge: "
    response = await exchange(limits_server, head, _pieces(64 * MIB))
    assert response.status == 431, response
    assert response.headers["connection"] == "close"
    assert_error_envelope(response.json(), "request_header_fields_too_large")


async def test_a_huge_url_gets_431(limits_server: RunningServer) -> None:
    head = b"GET /healthz?" + b"q" * (64 * 1024)
    response = await exchange(limits_server, head, _pieces(8 * MIB))
    assert response.status == 431, response


async def test_a_head_over_the_limit_that_arrives_at_once_gets_431(limits_server: RunningServer) -> None:
    head = request_head(limits_server, "GET", "/healthz", "X-Big: " + "b" * (20 * 1024))
    response = await exchange(limits_server, head, _pieces(0))
    assert response.status == 431, response


async def test_a_head_finished_in_the_read_that_carries_the_body_is_not_miscounted(
    limits_server: RunningServer,
) -> None:
    """The head arrives in two reads, the second also holding a body larger than the head limit."""
    body = b"grant_type=client_credentials&client_id=c&padding=" + b"p" * (FORM_LIMIT - 1024)
    head = declared(limits_server, f"/i_{'0' * 24}/token", len(body), FORM)

    async def rest() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.3)
        yield head[-2:] + body

    response = await exchange(limits_server, head[:-2], rest())
    assert (response.status, response.json()["error"]) == (404, "not_found"), response


async def test_too_many_headers_get_431(limits_server: RunningServer) -> None:
    many = [f"X-Field-{n}: {n}" for n in range(150)]
    head = request_head(limits_server, "GET", "/healthz", *many)
    response = await exchange(limits_server, head, _pieces(0))
    assert response.status == 431, response
    fine = [f"X-Field-{n}: {n}" for n in range(90)]
    ok = await exchange(limits_server, request_head(limits_server, "GET", "/healthz", *fine), _pieces(0))
    assert ok.status == 200, ok


async def test_other_clients_are_served_while_a_huge_header_is_refused(limits_server: RunningServer) -> None:
    head = request_head(limits_server, "GET", "/healthz").removesuffix(b"\r\n\r\n") + b"\r\nX-Huge: "
    huge = asyncio.create_task(exchange(limits_server, head, _pieces(64 * MIB)))
    async with httpx.AsyncClient(base_url=limits_server.url, timeout=5) as http:
        answers = await asyncio.gather(*(http.get("/healthz") for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert (await huge).status == 431


# --- memory ----------------------------------------------------------------------------------------


async def test_the_worker_memory_stays_flat_under_oversized_requests(limits_server: RunningServer) -> None:
    before = limits_server.rss_peak_kib()
    core = core_path(limits_server)
    token = f"/i_{'0' * 24}/token"
    attempts = [
        (declared(limits_server, core, 512 * MIB, "application/json"), _pieces(512 * MIB)),
        (streamed(limits_server, core, "application/json"), _chunked(512 * MIB)),
        (declared(limits_server, token, 512 * MIB, FORM), _pieces(512 * MIB)),
        (streamed(limits_server, token, FORM), _chunked(512 * MIB)),
    ]
    statuses = [(await exchange(limits_server, head, payload)).status for head, payload in attempts]
    huge_head = request_head(limits_server, "GET", "/healthz").removesuffix(b"\r\n\r\n") + b"\r\nX-Huge: "
    statuses.append((await exchange(limits_server, huge_head, _pieces(64 * MIB))).status)
    assert statuses == [413, 413, 413, 413, 431]
    grown_mib = (limits_server.rss_peak_kib() - before) / 1024
    assert grown_mib < 32, f"the worker's peak memory grew by {grown_mib:.0f} MiB"
    assert limits_server.tracebacks() == []


# --- what stays allowed ----------------------------------------------------------------------------


async def test_a_large_legal_core_body_is_accepted(raw: httpx.AsyncClient, account_path: str) -> None:
    """User metadata close to the limit, declared and then streamed (chunked)."""
    created = await raw.post(f"{account_path}/issuers", json={"name": "large bodies"})
    assert created.status_code == 201, created.text
    users = f"{account_path}/issuers/{created.json()['data']['id']}/users"
    metadata = {"blob": "m" * (CORE_LIMIT - 4096)}
    body = {"username_type": "email", "username": "large@example.com", "metadata": metadata}
    response = await raw.post(users, json=body)
    assert response.status_code == 201, response.text[:300]
    assert response.json()["data"]["metadata"] == metadata

    encoded = json.dumps({**body, "username": "streamed@example.com"}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(encoded), 64 * 1024):
            yield encoded[start : start + 64 * 1024]

    streamed_response = await raw.post(users, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed_response.status_code == 201, streamed_response.text[:300]


async def test_a_large_legal_form_reaches_the_token_endpoint(server: RunningServer) -> None:
    """A form just under the limit is read and answered by the endpoint itself (unknown issuer)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            f"/i_{'0' * 24}/token",
            data={"grant_type": "client_credentials", "client_id": "c", "padding": "p" * (FORM_LIMIT - 1024)},
        )
    assert (response.status_code, response.json()["error"]) == (404, "not_found"), response.text


# --- slow heads ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient_server() -> Iterator[RunningServer]:
    """A server that gives clients one second to send a request head."""
    with run_server("sqlite", {"AUTHPI_HEADER_TIMEOUT": "1"}) as running:
        yield running


async def _trickle(data: bytes, pause: float) -> AsyncIterator[bytes]:
    for byte in data:
        await asyncio.sleep(pause)
        yield bytes([byte])


async def test_a_head_sent_byte_by_byte_gets_408(impatient_server: RunningServer) -> None:
    head = request_head(impatient_server, "GET", "/healthz").removesuffix(b"\r\n\r\n") + b"\r\n"
    started = asyncio.get_running_loop().time()
    response = await exchange(impatient_server, head, _trickle(b"X-Slow: " + b"s" * 40, 0.25))
    assert response.status == 408, response
    assert response.headers["connection"] == "close"
    assert_error_envelope(response.json(), "request_timeout")
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_connection_that_sends_nothing_is_closed_quietly(impatient_server: RunningServer) -> None:
    parts = urlsplit(impatient_server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, with no unsolicited answer
    finally:
        writer.close()


async def test_kept_alive_connections_and_normal_requests_are_unaffected(
    impatient_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=impatient_server.url, timeout=10) as http:
        first = await http.get("/healthz")
        await asyncio.sleep(1.5)  # idle between requests: uvicorn's keep-alive timeout (5 s) applies
        second = await http.get("/healthz")
        created = await http.post(
            f"/v1/accounts/{impatient_server.account_id}/issuers",
            json={"name": "patient"},
            auth=impatient_server.api_key,
        )
    assert (first.status_code, second.status_code, created.status_code) == (200, 200, 201)
