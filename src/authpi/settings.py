"""Typed configuration. Every knob is an ``AUTHPI_*`` environment variable (see README)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTHPI_", extra="ignore")

    public_url: str = Field(
        default="http://localhost:8000",
        description="Base URL clients use to reach this server; issuer URL = `{public_url}/{issuer_id}`.",
    )
    data_dir: Path = Field(default=Path(".authpi"), description="Where the SQLite file and key file live.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. `postgresql+asyncpg://user@host/db`. Default: SQLite in data_dir.",
    )
    master_key: str | None = Field(
        default=None,
        description="Base64 32-byte key sealing secrets at rest. Default: a key file in data_dir.",
    )
    redis_url: str | None = Field(default=None, description="Optional Redis for shared rate-limit counters.")
    purge_after: int = Field(default=30 * 86400, ge=0, description="Seconds a soft-deleted resource is kept.")
    expired_retention: int = Field(
        default=7 * 86400,
        ge=0,
        description="Seconds expired or revoked sessions, codes and refresh tokens are kept before deletion.",
    )
    housekeeping_interval: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Seconds between housekeeping passes (purges and the monthly key rotation).",
    )
    rate_limit_core: str = Field(default="600/minute", description="Per-IP limit on Core API requests.")
    rate_limit_login: str = Field(default="30/minute", description="Per-IP limit on login form posts.")
    rate_limit_token: str = Field(default="1200/minute", description="Per-IP limit on the token endpoint.")
    rate_limit_authorize: str = Field(
        default="120/minute", description="Per-IP limit on authorization requests (`/authorize`)."
    )
    rate_limits_enabled: bool = Field(default=True, description="Turn every per-IP rate limit on or off.")
    code_ttl: int = Field(default=60, ge=1, le=600, description="Seconds an authorization code stays valid.")
    key_cache_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How long a worker trusts its in-memory signing keys."
    )
    config_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long a worker reuses issuer and client rows on protocol requests (0: never).",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest Core API request body in bytes; a larger one is refused (413) unread.",
    )
    max_form_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest IdP request body (token endpoint, hosted forms…) in bytes (413 beyond).",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers in bytes (431 and the connection closes beyond).",
    )
    max_headers: int = Field(
        default=100, ge=10, description="Most request header fields accepted (431 beyond)."
    )
    header_timeout: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Seconds a client has to send the request line and headers (408 and close beyond).",
    )
    log_level: str = Field(default="info", description="Log level for the server.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain scheme users copy from their PostgreSQL docs.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'authpi.db').resolve()}"

    @property
    def sqlite_path(self) -> Path | None:
        """The default SQLite database file in data_dir (None with AUTHPI_DATABASE_URL)."""
        return None if self.database_url else self.data_dir / "authpi.db"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def public_url_base(self) -> str:
        return self.public_url.rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
