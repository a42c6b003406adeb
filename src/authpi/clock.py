"""Time helpers. Core API bodies use Unix milliseconds, JWTs use seconds (decision 6)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def now_s() -> int:
    return int(time.time())


def next_version(previous_ms: int | None) -> int:
    """A new ``updated_at`` that is strictly greater than the previous one, so ETags always change."""
    now = now_ms()
    if previous_ms is not None and now <= previous_ms:
        return previous_ms + 1
    return now
