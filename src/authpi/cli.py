"""The ``authpi`` command: serve, migrate, bootstrap, accounts create, keys rotate, outbox, version."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import click

from authpi import __version__
from authpi.settings import Settings, get_settings
from authpi.startup import StartupError, default_public_url, load_settings, prepare, public_url_warnings


async def _create_account(
    settings: Settings, name: str | None, *, only_if_empty: bool
) -> dict[str, str] | None:
    from authpi.runtime import Runtime
    from authpi.services import accounts

    runtime = Runtime.build(settings)
    try:
        async with runtime.sessions() as session:
            if only_if_empty and await accounts.count(session) > 0:
                return None
            credentials = await accounts.create_account(session, name)
            await session.commit()
            return credentials.as_dict()
    finally:
        await runtime.close()


def _ready() -> Settings:
    """Checked settings, a migrated database and a master key that opens it (or a StartupError)."""
    settings = load_settings()
    prepare(settings)
    return settings


def _warn(message: str) -> None:
    click.echo(f"authpi: warning: {message}", err=True)


class _Commands(click.Group):
    """Every command reports a start-up problem as one line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StartupError as exc:
            click.echo(f"authpi: error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_Commands)
def main() -> None:
    """AuthPI Server: a self-hostable identity provider."""


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    _ready()
    click.echo("database is up to date")


@main.command()
@click.option("--name", default="Default account", show_default=True)
def bootstrap(name: str) -> None:
    """Create the first account and a full-access API key; print them once as JSON."""
    settings = _ready()
    created = asyncio.run(_create_account(settings, name, only_if_empty=True))
    if created is None:
        click.echo("already bootstrapped: use `authpi accounts create` for another account", err=True)
        sys.exit(1)
    click.echo(json.dumps(created))


@main.group()
def accounts() -> None:
    """Manage accounts."""


@accounts.command("create")
@click.option("--name", required=True)
def accounts_create(name: str) -> None:
    """Create another account with its first full-access API key; print them once as JSON."""
    settings = _ready()
    created = asyncio.run(_create_account(settings, name, only_if_empty=False))
    click.echo(json.dumps(created))


@main.group()
def keys() -> None:
    """Manage issuer signing keys."""


async def _rotate_keys(settings: Settings) -> int:
    from authpi.oidc.keys import rotate_all
    from authpi.runtime import Runtime

    runtime = Runtime.build(settings)
    try:
        async with runtime.sessions() as session:
            return await rotate_all(session, runtime.secretbox, force=True)
    finally:
        await runtime.close()


@keys.command("rotate")
def keys_rotate() -> None:
    """Give every issuer a new key per algorithm now; previous keys stay published for 45 days.

    Running servers sign with the new keys within a second (the rotation evicts their cached keys)."""
    settings = _ready()
    created = asyncio.run(_rotate_keys(settings))
    click.echo(json.dumps({"created": created}))


@main.group()
def outbox() -> None:
    """Email and SMS waiting in the outbox (where they stay when SMTP or SMS is not configured)."""


async def _outbox_list(settings: Settings, status: str | None, limit: int) -> list[dict[str, Any]]:
    from authpi.runtime import Runtime
    from authpi.services import messages

    runtime = Runtime.build(settings)
    try:
        async with runtime.sessions() as session:
            return [messages.describe(row) for row in await messages.recent(session, status, limit)]
    finally:
        await runtime.close()


async def _outbox_show(settings: Settings, message_id: str) -> dict[str, Any] | None:
    from authpi.runtime import Runtime
    from authpi.services import messages

    runtime = Runtime.build(settings)
    try:
        async with runtime.sessions() as session:
            row = await messages.get(session, message_id)
            if row is None:
                return None
            return {**messages.describe(row), **messages.content_of(row, runtime.secretbox).as_dict()}
    finally:
        await runtime.close()


@outbox.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "sending", "sent", "failed", "all"]),
    default="all",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def outbox_list(status: str, limit: int, as_json: bool) -> None:
    """The newest messages first: ID, status, channel, recipient, template, attempts."""
    settings = _ready()
    found = asyncio.run(_outbox_list(settings, None if status == "all" else status, limit))
    for item in found:
        if as_json:
            click.echo(json.dumps(item))
        else:
            click.echo(
                f"{item['id']}  {item['status']:<7}  {item['channel']:<5}  {item['to']}  "
                f"{item['template']}  attempts={item['attempts']}"
            )
    if not found and not as_json:
        click.echo("the outbox is empty", err=True)


@outbox.command("show")
@click.argument("message_id")
def outbox_show(message_id: str) -> None:
    """One message with what it says (subject, text and HTML): the development path, for reading
    codes and links when no SMTP server or SMS gateway is configured."""
    settings = _ready()
    found = asyncio.run(_outbox_show(settings, message_id[:64]))
    if found is None:
        click.echo(f"authpi: error: no message {message_id[:64]}", err=True)
        sys.exit(1)
    for key in ("id", "status", "channel", "to", "template", "locale", "attempts", "last_error", "subject"):
        if found.get(key) is not None:
            click.echo(f"{key}: {found[key]}")
    click.echo("")
    click.echo(found["text"].rstrip("\n"))
    if found.get("html"):
        click.echo("\n--- HTML ---")
        click.echo(found["html"].rstrip("\n"))


def _publish_public_url(settings: Settings, host: str, port: int) -> Settings:
    """Default AUTHPI_PUBLIC_URL from the bound address. Workers read their settings from the
    environment (in this process and in spawned ones alike), so the value goes there."""
    for warning in public_url_warnings(settings, host, port):
        _warn(warning)
    if settings.public_url is not None:
        return settings
    os.environ["AUTHPI_PUBLIC_URL"] = default_public_url(host, port)
    get_settings.cache_clear()
    return get_settings()


def _exit_cleanly_on_sigterm() -> None:
    """With one worker uvicorn serves in this process and, once it has shut down gracefully,
    re-raises the SIGTERM it caught, so the default action would end the process "killed by
    signal". A graceful stop is a success: exit 0, as the multi-worker supervisor does."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Migrate, bootstrap an empty database, and serve both APIs."""
    import uvicorn

    from authpi.observability import workers as observability

    settings = _publish_public_url(_ready(), host, port)
    # Before anything imports prometheus-client: the workers inherit the metrics directory.
    log_config = observability.configure(settings)
    created = asyncio.run(_create_account(settings, "Default account", only_if_empty=True))
    if created is not None:
        click.echo("First start: created an account and an API key. The secret is shown only once:", err=True)
        click.echo(json.dumps(created), err=True)
    _exit_cleanly_on_sigterm()
    uvicorn.run(
        "authpi.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        log_config=log_config,
        access_log=False,  # authpi.access writes it, with the request ID and duration
        # X-Forwarded-For and -Proto count only from AUTHPI_TRUSTED_PROXIES (IPs and CIDR networks).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # httptools, with limits on the request line and headers (see authpi.protocol).
        http="authpi.protocol:LimitedHttpToolsProtocol",
    )
