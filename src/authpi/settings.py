"""Typed configuration. Every knob is an ``AUTHPI_*`` environment variable (see README)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The log levels uvicorn accepts.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Database URL schemes the server can drive (it always talks through an async driver).
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTHPI_", extra="ignore")

    public_url: str | None = Field(
        default=None,
        description="Base URL clients use to reach this server; issuer URL = `{public_url}/{issuer_id}`. "
        "Default: `http://{host}:{port}` of `authpi serve`.",
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
    redis_url: str | None = Field(
        default=None,
        description="Optional Redis: rate-limit counters shared by every instance, and cache invalidation "
        "across instances (pub/sub).",
    )
    redis_prefix: str = Field(
        default="authpi",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of this deployment's Redis keys and pub/sub channel (several deployments "
        "can share one Redis; pub/sub channels ignore the database number).",
    )
    purge_after: int = Field(default=30 * 86400, ge=0, description="Seconds a soft-deleted resource is kept.")
    expired_retention: int = Field(
        default=7 * 86400,
        ge=0,
        description="Seconds expired or revoked sessions, codes, refresh tokens and finished messages are "
        "kept before deletion.",
    )
    event_retention: int = Field(
        default=90 * 86400, ge=0, description="Seconds events are kept in the event log before deletion."
    )
    event_buffer: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Machine-token events (`machine.token.issued`) a worker queues for its batched "
        "writer; beyond it the newest are dropped and counted. 0: not recorded.",
    )
    event_flush_interval: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="Seconds between writes of the queued machine-token events (sooner when 500 wait).",
    )
    housekeeping_interval: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Seconds between housekeeping passes (purges and the monthly key rotation).",
    )
    rate_limit_core: str = Field(default="600/minute", description="Per-IP limit on Core API requests.")
    rate_limit_login: str = Field(default="30/minute", description="Per-IP limit on login form posts.")
    rate_limit_login_account: str = Field(
        default="10/minute",
        description="Per-account limit on password attempts (issuer + identifier, from any address).",
    )
    rate_limit_token: str = Field(default="1200/minute", description="Per-IP limit on the token endpoint.")
    rate_limit_authorize: str = Field(
        default="120/minute", description="Per-IP limit on authorization requests (`/authorize`)."
    )
    rate_limits_enabled: bool = Field(default=True, description="Turn every per-IP rate limit on or off.")
    send_limit_per_recipient: str = Field(
        default="5/hour", description="Codes and links sent to one email address or phone number."
    )
    send_limit_per_ip: str = Field(
        default="20/hour", description="Codes and links one client IP address may have sent."
    )
    send_limit_per_issuer: str = Field(
        default="1000/hour", description="Codes and links one issuer sends (a cap on SMS pumping)."
    )
    code_resend_cooldown: int = Field(
        default=30, ge=0, le=3600, description="Seconds before another code may be sent for the same sign-in."
    )
    code_ttl: int = Field(default=60, ge=1, le=600, description="Seconds an authorization code stays valid.")
    key_cache_seconds: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="How long a worker trusts its in-memory signing keys (a rotation evicts them at once).",
    )
    config_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
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
    shutdown_timeout: int = Field(
        default=10,
        ge=0,
        le=3600,
        description="Seconds `authpi serve` waits for requests in flight after SIGTERM before ending them.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated IPs and CIDR networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are honoured (none by default).",
    )
    database_connect_timeout: float = Field(
        default=5.0, gt=0, le=300, description="Seconds to wait for a new database connection."
    )
    database_statement_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds one database statement may run (PostgreSQL statement_timeout and "
        "idle_in_transaction_session_timeout; SQLite busy_timeout).",
    )
    database_pool_timeout: float = Field(
        default=3.0,
        gt=0,
        le=300,
        description="Seconds a request waits for a pooled database connection before a 503.",
    )
    max_in_flight: int = Field(
        default=128, ge=1, description="Requests one worker serves at once; beyond it a 503 at once."
    )
    stale_cache_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="How long cached issuer and client rows and signing keys may serve protocol "
        "requests while the database is unreachable.",
    )
    allow_private_networks: bool = Field(
        default=False,
        description="Let outbound requests (webhooks, upstream identity providers, SMS) reach private, "
        "loopback and link-local addresses. Only for tests and single-machine setups.",
    )
    upstream_timeout: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="Seconds one request to an upstream identity provider (discovery, keys, token "
        "exchange, user info) may take in all.",
    )
    upstream_url_rewrites: dict[str, str] = Field(
        default={},
        description="JSON object rewriting the URLs of built-in upstream providers (OAuth 2.0 presets, "
        "GitHub, Apple) by prefix, e.g. to reach them through an egress gateway or a stand-in in tests.",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds one webhook delivery attempt may take in all."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256, description="Webhook deliveries one worker process attempts at once."
    )
    webhook_poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between a worker's looks for due webhook deliveries (retries, and rows "
        "written by other processes); its own new deliveries go out at once.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="The SMTP server email goes through: smtp://[user:pass@]host:port, smtps:// for "
        "implicit TLS, ?starttls=true for STARTTLS. Unset, email stays in the outbox (`authpi outbox`).",
    )
    email_from: str | None = Field(
        default=None,
        description="The From address of every email, e.g. `AuthPI <noreply@example.com>` (required with "
        "AUTHPI_SMTP_URL).",
    )
    dns_nameservers: str | None = Field(
        default=None,
        description="Comma-separated DNS servers (host or host:port) for SSO domain verification; "
        "unset, the system resolver.",
    )
    sms_webhook_url: str | None = Field(
        default=None,
        description="SMS go to this URL as a signed JSON POST (the SMS provider's gateway). Unset, SMS "
        "stay in the outbox.",
    )
    sms_webhook_secret: str | None = Field(
        default=None,
        description="The HMAC-SHA256 key of the SMS webhook's `X-Webhook-Signature` (required with "
        "AUTHPI_SMS_WEBHOOK_URL).",
    )
    message_timeout: float = Field(
        default=30.0, gt=0, le=300, description="Seconds one email or SMS attempt may take in all."
    )
    message_max_attempts: int = Field(
        default=10, ge=1, le=100, description="Attempts at one email or SMS before it is `failed`."
    )
    message_retry_delay: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds before the first retry of a message; each retry waits up to twice as long "
        "(with full jitter), at most AUTHPI_MESSAGE_RETRY_MAX_DELAY.",
    )
    message_retry_max_delay: float = Field(
        default=1800.0, gt=0, le=86400, description="The longest wait between two attempts at a message."
    )
    message_poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between a worker's looks for due messages (retries, and messages written by "
        "other processes); its own new messages go out at once.",
    )
    log_level: str = Field(default="info", description="Log level for the server.")
    fault_injection: bool = Field(
        default=False,
        description="Testing only: honour `X-Fault-Injection: crash-after-commit` on Core API requests "
        "(the worker kills itself right after committing). Never enable it in production.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as human-readable text or as one JSON object per line."
    )
    metrics_enabled: bool = Field(default=False, description="Serve Prometheus metrics at `/metrics`.")
    metrics_token: str | None = Field(
        default=None,
        description="When set, `/metrics` requires `Authorization: Bearer <token>`.",
    )

    # Every value is checked when the settings load, so a mistake stops the server at start with a
    # message naming the variable, instead of surfacing later as failing requests.

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://id.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not have a query, fragment or credentials")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        """Checked, and rewritten to the async driver (the plain schemes users copy are accepted)."""
        if not value:
            return None
        scheme, separator, rest = value.partition("://")
        backend, _, driver = scheme.lower().partition("+")
        backend = "postgresql" if backend == "postgres" else backend
        if not separator or backend not in _ASYNC_DRIVERS:
            raise ValueError("must be a postgresql:// or sqlite:// URL (e.g. postgresql://user@host/db)")
        expected = _ASYNC_DRIVERS[backend]
        if driver and driver != expected:
            raise ValueError(f"names the driver {driver!r}: use {backend}:// or {backend}+{expected}://")
        resolved = f"{backend}+{expected}://{rest}"
        try:
            url = make_url(resolved)
        except ArgumentError:
            raise ValueError("is not a valid database URL (e.g. postgresql://user@host/db)") from None
        if not url.database:
            raise ValueError("must name a database (postgresql://user@host/db, sqlite:////path/to/file.db)")
        return resolved

    @field_validator("master_key")
    @classmethod
    def _check_master_key(cls, value: str | None) -> str | None:
        if value is not None:
            decode_master_key(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value and not urlsplit(value).scheme.startswith(("redis", "rediss")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value or None

    @field_validator(
        "rate_limit_core",
        "rate_limit_login",
        "rate_limit_login_account",
        "rate_limit_token",
        "rate_limit_authorize",
        "send_limit_per_recipient",
        "send_limit_per_ip",
        "send_limit_per_issuer",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if len(items) != 1 or items[0].amount < 1:
            raise ValueError(
                "must be one limit such as 30/minute (AUTHPI_RATE_LIMITS_ENABLED=false turns limits off)"
            )
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        return (
            [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return networks

    @field_validator("upstream_url_rewrites")
    @classmethod
    def _check_rewrites(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, target in value.items():
            for url in (prefix, target):
                if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                    raise ValueError(f"AUTHPI_UPSTREAM_URL_REWRITES: {url!r} is not an http(s) URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        if value:
            from authpi.outbound.smtp import parse_url

            parse_url(value)
        return value or None

    @field_validator("email_from")
    @classmethod
    def _check_email_from(cls, value: str | None) -> str | None:
        if value:
            from authpi.outbound.smtp import check_address

            check_address(value)
        return value or None

    @field_validator("sms_webhook_url")
    @classmethod
    def _check_sms_webhook_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an absolute http(s) URL")
        return value or None

    @model_validator(mode="after")
    def _check_delivery_pairs(self) -> Settings:
        if self.smtp_url and not self.email_from:
            raise ValueError("AUTHPI_EMAIL_FROM is required with AUTHPI_SMTP_URL")
        if self.sms_webhook_url and not self.sms_webhook_secret:
            raise ValueError("AUTHPI_SMS_WEBHOOK_SECRET is required with AUTHPI_SMS_WEBHOOK_URL")
        return self

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url  # already rewritten to the async driver (see the validator)
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
        # ``authpi serve`` always sets the public URL (from --host and --port when not configured).
        return (self.public_url or DEFAULT_PUBLIC_URL).rstrip("/")


DEFAULT_PUBLIC_URL = "http://localhost:8000"


def decode_master_key(value: str) -> bytes:
    """The 32 bytes of a base64 master key (URL-safe or standard alphabet, padding optional)."""
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (32 random bytes, e.g. from `openssl rand -base64 32`)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, not {len(key)}")
    return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
