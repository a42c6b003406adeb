"""Requests to upstream providers: only through the outbound guard, bounded in time and size.

Every failure (refused address, timeout, connection error, an answer too large, not JSON or not a
2xx) becomes an ``UpstreamError`` whose ``reason`` is safe to show and to record: it never carries
the provider's answer, which could hold tokens."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2

from authpi.outbound import guard

MAX_RESPONSE = 256 * 1024
_clients: dict[bool, httpx2.AsyncClient] = {}


class UpstreamError(Exception):
    """The upstream provider could not be used for this sign-in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client(*, allow_private: bool) -> httpx2.AsyncClient:
    """This process's guarded client (one per private-network setting, made on first use)."""
    found = _clients.get(allow_private)
    if found is None:
        # The per-request deadline below bounds each call; this timeout bounds each network step.
        found = _clients[allow_private] = guard.client(allow_private=allow_private, timeout=30.0)
    return found


async def request_json(
    http: httpx2.AsyncClient,
    method: str,
    url: str,
    *,
    seconds: float,
    what: str,
    **kwargs: Any,
) -> Any:
    """The JSON answer of ``method url`` (``what`` names it in errors), within ``timeout`` seconds
    and ``MAX_RESPONSE`` bytes."""
    headers = {"Accept": "application/json", "User-Agent": "AuthPI", **kwargs.pop("headers", {})}
    try:
        async with asyncio.timeout(seconds):
            async with http.stream(method, url, headers=headers, **kwargs) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE:
                        raise UpstreamError(f"the provider's {what} answer is too large")
                status = response.status_code
    except TimeoutError:
        raise UpstreamError(f"the provider did not answer the {what} request in time") from None
    except guard.AddressRefused:
        raise UpstreamError(f"the provider's {what} address is not allowed") from None
    except httpx2.HTTPError:
        raise UpstreamError(f"the provider's {what} endpoint could not be reached") from None
    try:
        parsed = json.loads(bytes(body)) if body else None
    except ValueError:
        parsed = None
    if not 200 <= status < 300:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        code = f" ({error})" if isinstance(error, str) and error.isascii() and len(error) < 64 else ""
        raise UpstreamError(f"the provider refused the {what} request{code}")
    if parsed is None:
        raise UpstreamError(f"the provider's {what} answer is not JSON")
    return parsed
