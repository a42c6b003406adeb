"""Rate limits (decision 20) on ``limits.aio``: in-process memory, or Redis when configured.

Most rules count per client IP address (the proxy's client with AUTHPI_TRUSTED_PROXIES); the
``login_account`` rule counts password attempts per account identifier, from any address."""

from __future__ import annotations

import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from authpi.services.errors import RateLimited
from authpi.settings import Settings


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits_enabled
        storage: Storage
        if settings.redis_url:
            # Every instance counts in the same keys: a limit holds for the deployment, not per instance.
            shared = storage_from_string(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=f"{settings.redis_prefix}:limits",
            )
            assert isinstance(shared, Storage)
            storage = shared
        else:
            storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(storage)
        self._rules: dict[str, RateLimitItem] = {
            "core": parse(settings.rate_limit_core),
            "login": parse(settings.rate_limit_login),
            "login_account": parse(settings.rate_limit_login_account),
            "token": parse(settings.rate_limit_token),
            "authorize": parse(settings.rate_limit_authorize),
            # Codes and links sent by email or SMS (services.send_limits).
            "send_recipient": parse(settings.send_limit_per_recipient),
            "send_ip": parse(settings.send_limit_per_ip),
            "send_issuer": parse(settings.send_limit_per_issuer),
        }
        # One extra hit per rule, identity and window: the first refusal of a window is reported.
        self._reported = {rule: type(item)(1, item.multiples) for rule, item in self._rules.items()}

    async def hit(self, rule: str, identity: str) -> None:
        """Count one request of ``identity`` against ``rule``; raise ``RateLimited`` past the limit."""
        if not self.enabled:
            return
        item = self._rules[rule]
        if await self._limiter.hit(item, rule, identity):
            return
        stats = await self._limiter.get_window_stats(item, rule, identity)
        first = await self._limiter.hit(self._reported[rule], f"reported:{rule}", identity)
        raise RateLimited(int(stats.reset_time - time.time()) + 1, first=first)

    async def hit_all(self, counts: list[tuple[str, str]]) -> None:
        """Count one request against every ``(rule, identity)`` pair, or against none of them:
        when one is already at its limit ``RateLimited`` is raised and nothing is counted, so a
        refused request does not use up the other limits' allowance."""
        if not self.enabled:
            return
        for rule, identity in counts:
            if not await self._limiter.test(self._rules[rule], rule, identity):
                await self.hit(rule, identity)  # over: raises with the window's reset time
        for rule, identity in counts:
            await self.hit(rule, identity)
