"""One webhook request: the event as the events API shows it, signed, sent with a deadline, and its
outcome (2xx = delivered) in words an account can read in the deliveries API (never a secret)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2

from authpi import __version__
from authpi.crypto.secretbox import SecretBox
from authpi.http.schemas.events import EventOut
from authpi.outbound import signing
from authpi.outbound.guard import AddressRefused
from authpi.services.webhook_deliveries import Outcome
from authpi.storage.tables.events import Event
from authpi.storage.tables.webhooks import Webhook

USER_AGENT = f"AuthPI-Webhooks/{__version__}"
KEPT_RESPONSE_BYTES = 4096  # of a failed response's body, for last_error; the rest is not read


def body_of(event: Event) -> bytes:
    """The Event JSON exactly as ``GET /events/{id}`` returns it (its ``data``), as compact as the
    API writes it."""
    payload = EventOut.of(event).model_dump(mode="json")
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Credentials:
    signature_secret: str | None
    bearer_token: str | None

    @classmethod
    def of(cls, webhook: Webhook, box: SecretBox) -> Credentials:
        secret = token = None
        if "signature" in webhook.auth_type and webhook.signature_secret_sealed:
            secret = box.open(webhook.signature_secret_sealed, f"webhook-signature:{webhook.id}").decode()
        if "bearer" in webhook.auth_type and webhook.bearer_token_sealed:
            token = box.open(webhook.bearer_token_sealed, f"webhook-bearer:{webhook.id}").decode()
        return cls(secret, token)

    def redact(self, text: str) -> str:
        """A receiver may echo what it was sent: no credential reaches last_error."""
        for value in (self.signature_secret, self.bearer_token):
            if value:
                text = text.replace(value, "[redacted]")
        return text


def headers(credentials: Credentials, event_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    out = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    out.update(signing.headers(credentials.signature_secret, event_id, timestamp, body))
    if credentials.bearer_token:
        out["Authorization"] = f"Bearer {credentials.bearer_token}"
    return out


async def send(
    client: httpx2.AsyncClient, webhook: Webhook, event: Event, box: SecretBox, limit_s: float
) -> Outcome:
    """POST ``event`` to ``webhook``; the whole attempt (lookup, connect, send, answer) gets
    ``limit_s`` seconds."""
    credentials = Credentials.of(webhook, box)
    body = body_of(event)
    request_headers = headers(credentials, event.id, body, int(time.time()))
    try:
        async with asyncio.timeout(limit_s):
            async with client.stream("POST", webhook.url, content=body, headers=request_headers) as response:
                if 200 <= response.status_code < 300:
                    return Outcome(success=True, status=response.status_code)
                kept = await _first_bytes(response)
        text = kept.decode("utf-8", errors="replace").strip()
        error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
        return Outcome(success=False, status=response.status_code, error=credentials.redact(error))
    except TimeoutError:
        return Outcome(success=False, error=f"timed out after {limit_s:g} s")
    except AddressRefused as exc:
        return Outcome(success=False, error=str(exc))
    except httpx2.HTTPError as exc:
        return Outcome(success=False, error=credentials.redact(_describe(exc)))


async def _first_bytes(response: Any) -> bytes:
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk[: KEPT_RESPONSE_BYTES - len(kept)]
        if len(kept) >= KEPT_RESPONSE_BYTES:
            break
    return kept


def _describe(exc: Exception) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
