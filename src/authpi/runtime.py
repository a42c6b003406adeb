"""Process-wide objects built once at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authpi.crypto.secretbox import SecretBox, load_master_key
from authpi.oidc.keys import KeyCache
from authpi.ratelimit import RateLimits
from authpi.services.machine_tokens import MachineTokenLog
from authpi.settings import Settings
from authpi.storage import invalidation, row_cache
from authpi.storage.db import make_engine, make_probe, make_sessionmaker
from authpi.storage.health import DatabaseHealth


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secretbox: SecretBox
    rate_limits: RateLimits
    keys: KeyCache
    side_engine: AsyncEngine
    health: DatabaseHealth
    probe_engine: AsyncEngine
    machine_tokens: MachineTokenLog

    @classmethod
    def build(cls, settings: Settings, health: DatabaseHealth | None = None) -> Runtime:
        row_cache.rows.ttl = settings.config_cache_seconds
        row_cache.rows.stale_for = settings.stale_cache_seconds
        health = health or DatabaseHealth()
        health.probe, probe_engine = make_probe(settings)
        engine = make_engine(settings, health=health)
        sessions = make_sessionmaker(engine)
        box = SecretBox(load_master_key(settings.master_key, settings.data_dir))
        # Keys load through a pool of their own so a request holding a connection can never
        # wait on key loading that needs one from the same, exhausted pool.
        side_engine = make_engine(settings, pool_size=1, health=health)
        keys = KeyCache(
            make_sessionmaker(side_engine), box, settings.key_cache_seconds, settings.stale_cache_seconds
        )
        invalidation.configure(settings)
        invalidation.subscribe("signing_keys", keys.evict, keys.clear)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            secretbox=box,
            rate_limits=RateLimits(settings),
            keys=keys,
            side_engine=side_engine,
            health=health,
            probe_engine=probe_engine,
            machine_tokens=MachineTokenLog(sessions, settings.event_buffer, settings.event_flush_interval),
        )

    def pools(self) -> dict[str, AsyncEngine]:
        """The engines whose connection pools the metrics report, by name."""
        return {"main": self.engine, "keys": self.side_engine}

    async def close(self) -> None:
        await invalidation.flush()  # evictions this process still publishes (a command's last write)
        await self.health.close()
        await self.engine.dispose()
        await self.side_engine.dispose()
        await self.probe_engine.dispose()
