"""Process-wide objects built once at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authpi.crypto.secretbox import SecretBox, load_master_key
from authpi.ratelimit import RateLimits
from authpi.settings import Settings
from authpi.storage.db import make_engine, make_sessionmaker


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secretbox: SecretBox
    rate_limits: RateLimits

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            secretbox=SecretBox(load_master_key(settings.master_key, settings.data_dir)),
            rate_limits=RateLimits(settings),
        )

    async def close(self) -> None:
        await self.engine.dispose()
