"""SMS through a provider interface. The one provider today is an HTTP webhook (decision 31): a
JSON POST to ``AUTHPI_SMS_WEBHOOK_URL``, signed like webhooks (``X-Webhook-Signature: t=<unix>,
v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, plus ``webhook-id``/``webhook-timestamp``), through the
outbound address guard, with a deadline. A gateway of its own (Twilio, say) is another ``SmsProvider``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Protocol

import httpx2

from authpi import __version__
from authpi.outbound import signing
from authpi.outbound.guard import AddressRefused
from authpi.services.outbox import Outcome

USER_AGENT = f"AuthPI-SMS/{__version__}"
KEPT_RESPONSE_BYTES = 1024


class SmsProvider(Protocol):
    async def send(self, message_id: str, recipient: str, text: str) -> Outcome: ...

    async def close(self) -> None: ...


def body_of(message_id: str, recipient: str, text: str) -> bytes:
    payload = {"id": message_id, "to": recipient, "text": text}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSmsProvider:
    def __init__(self, url: str, secret: str, *, allow_private: bool, timeout: float) -> None:
        from authpi.outbound import guard

        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._client = guard.client(allow_private=allow_private, timeout=timeout, max_connections=8)

    async def send(self, message_id: str, recipient: str, text: str) -> Outcome:
        """A 2xx answer delivers the SMS; any other answer, or none in time, is a failed attempt
        (retried). The error never repeats the secret (a gateway may echo what it was sent)."""
        body = body_of(message_id, recipient, text)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "X-Webhook-Signature": signing.x_webhook_signature(self._secret, timestamp, body),
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                    if 200 <= response.status_code < 300:
                        return Outcome(success=True, status=response.status_code)
                    kept = b""
                    async for chunk in response.aiter_bytes():
                        kept += chunk[: KEPT_RESPONSE_BYTES - len(kept)]
                        if len(kept) >= KEPT_RESPONSE_BYTES:
                            break
            text_kept = kept.decode("utf-8", errors="replace").strip().replace(self._secret, "[redacted]")
            error = f"HTTP {response.status_code}" + (f": {text_kept}" if text_kept else "")
            return Outcome(success=False, status=response.status_code, error=error)
        except TimeoutError:
            return Outcome(success=False, error=f"timed out after {self.timeout:g} s")
        except AddressRefused as exc:
            return Outcome(success=False, error=str(exc))
        except httpx2.HTTPError as exc:
            detail = str(exc).strip().replace(self._secret, "[redacted]")
            return Outcome(
                success=False, error=f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            )

    async def close(self) -> None:
        await self._client.aclose()
