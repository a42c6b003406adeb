"""Slowloris: many connections that each trickle a request head, a byte at a time, must neither stay
open past AUTHPI_HEADER_TIMEOUT nor keep the worker from serving everyone else meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

CONNECTIONS = 200
HEADER_TIMEOUT = 2.0
RESET = b"(connection reset)"


@pytest.fixture(scope="module")
def slow_head_server() -> Iterator[RunningServer]:
    with run_server("sqlite", {"AUTHPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}) as running:
        yield running


async def trickle_a_head(server: RunningServer, closed_after: list[float]) -> bytes:
    """Open a connection and send a head one byte every 0.2 s (never finishing it) until the server
    hangs up; record when that happened and return what the server answered."""
    parts = urlsplit(server.url)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Slow: ".encode() + b"s" * 1000
    answer = asyncio.ensure_future(reader.read())
    try:
        for byte in head:
            if answer.done():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([answer], timeout=0.2)
        try:
            received = await asyncio.wait_for(answer, 30)
        except ConnectionResetError:
            # The server answered 408 and closed while a trickled byte was still unread on its side,
            # so its kernel reset the connection: hung up all the same, the answer is lost.
            received = RESET
    finally:
        closed_after.append(time.monotonic() - started)
        writer.close()
    return received


async def test_slow_heads_are_closed_after_the_timeout_while_others_are_served(
    slow_head_server: RunningServer,
) -> None:
    closed_after: list[float] = []
    slow = [asyncio.ensure_future(trickle_a_head(slow_head_server, closed_after)) for _ in range(CONNECTIONS)]
    await asyncio.sleep(0.5)  # every slow connection is open and trickling
    latencies = []
    async with httpx.AsyncClient(base_url=slow_head_server.url, timeout=10) as http:
        for _ in range(10):
            started = time.monotonic()
            issuers = await http.get(
                f"/v1/accounts/{slow_head_server.account_id}/issuers", auth=slow_head_server.api_key
            )
            latencies.append(time.monotonic() - started)
            assert issuers.status_code == 200
            await asyncio.sleep(0.1)
    _, still_open = await asyncio.wait(slow, timeout=HEADER_TIMEOUT + 3)
    for connection in still_open:
        connection.cancel()
    assert not still_open, f"{len(still_open)} slow connections still open"
    assert max(latencies) < 1.0, latencies
    assert len(closed_after) == CONNECTIONS
    answers = [connection.result() for connection in slow]
    assert all(answer.startswith(b"HTTP/1.1 408 ") or answer == RESET for answer in answers), {
        a[:40] for a in answers
    }
    assert sum(answer != RESET for answer in answers) >= CONNECTIONS // 2
