"""A real HTTP receiver for webhook tests: an asyncio server on 127.0.0.1 in the test process that
records every request and answers as the test says (200, an error status, or not at all)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook as StandardWebhook


@dataclass
class Receipt:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status answered (None: left hanging)
    at: float = field(default_factory=time.monotonic)

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.answer: int | str = 200  # a status code, or "hang"
        self.fail_first_attempt = False  # answer 500 to the first request for each event
        self.port = 0
        self._server: asyncio.Server | None = None
        self.arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = self.answer
                event_id = headers.get("webhook-id")
                if self.fail_first_attempt and all(
                    r.headers.get("webhook-id") != event_id for r in self.receipts
                ):
                    answer = 500
                status = answer if isinstance(answer, int) else None
                self.receipts.append(Receipt(headers, body, status))
                self.arrived.set()
                if status is None:
                    await asyncio.sleep(3600)  # until the sender gives up and hangs up
                    return
                text = b"ok" if status < 300 else b"receiver says no"
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(text)}\r\n\r\n".encode() + text)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def answered_ok(self) -> list[Receipt]:
        return [r for r in self.receipts if r.answered is not None and 200 <= r.answered < 300]

    def delivered_ids(self) -> set[str]:
        return {r.event_id for r in self.answered_ok()}


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60, step: float = 0.2) -> None:
    """Waits until ``check`` holds (failing the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


def verify(receipt: Receipt, secret: str, bearer: str | None = None) -> None:
    """Checks both signatures of a request by hand and the standard one with ``standardwebhooks``."""
    headers, body = receipt.headers, receipt.body
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("AuthPI-Webhooks/")
    timestamp = headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 120
    # X-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
    parts = dict(item.split("=", 1) for item in headers["x-webhook-signature"].split(","))
    assert parts["t"] == timestamp
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    # Standard Webhooks, by hand and with the library.
    key = base64.b64decode(secret.removeprefix("whs_"))
    signed = f"{headers['webhook-id']}.{timestamp}.".encode() + body
    standard = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == standard
    StandardWebhook(secret.removeprefix("whs_")).verify(body, headers)
    assert json.loads(body)["id"] == headers["webhook-id"]
    if bearer is not None:
        assert headers["authorization"] == f"Bearer {bearer}"
