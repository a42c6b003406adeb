"""Webhook request signatures (decision 33), both schemes over the same body and timestamp.

* ``X-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret as UTF-8, "<t>.<body>")>``;
* Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64
  HMAC-SHA256(base64-decoded secret without "whs_", "<id>.<t>.<body>")>``, which the standardwebhooks
  libraries verify with ``secret.removeprefix("whs_")``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whs_"


def x_webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str | None, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The identification headers, plus both signatures when there is a secret."""
    out = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if secret:
        out["X-Webhook-Signature"] = x_webhook_signature(secret, timestamp, body)
        out["webhook-signature"] = standard_signature(secret, message_id, timestamp, body)
    return out
