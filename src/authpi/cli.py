"""The ``authpi`` command: serve, migrate, bootstrap, accounts create, version."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from authpi import __version__
from authpi.settings import Settings, get_settings


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


def _migrate(settings: Settings) -> None:
    from authpi.storage.migrate import upgrade

    upgrade(settings)


@click.group()
def main() -> None:
    """AuthPI Server: a self-hostable identity provider."""


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    _migrate(get_settings())
    click.echo("database is up to date")


@main.command()
@click.option("--name", default="Default account", show_default=True)
def bootstrap(name: str) -> None:
    """Create the first account and a full-access API key; print them once as JSON."""
    settings = get_settings()
    _migrate(settings)
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
    settings = get_settings()
    _migrate(settings)
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

    Running servers pick the new keys up within a minute (their key cache refreshes)."""
    settings = get_settings()
    _migrate(settings)
    created = asyncio.run(_rotate_keys(settings))
    click.echo(json.dumps({"created": created}))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Migrate, bootstrap an empty database, and serve both APIs."""
    import uvicorn

    from authpi.observability import workers as observability

    settings = get_settings()
    # Before anything imports prometheus-client: the workers inherit the metrics directory.
    log_config = observability.configure(settings)
    _migrate(settings)
    created = asyncio.run(_create_account(settings, "Default account", only_if_empty=True))
    if created is not None:
        click.echo("First start: created an account and an API key. The secret is shown only once:", err=True)
        click.echo(json.dumps(created), err=True)
    uvicorn.run(
        "authpi.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        log_config=log_config,
        access_log=False,  # authpi.access writes it, with the request ID and duration
        proxy_headers=False,
        server_header=False,
        # httptools, with limits on the request line and headers (see authpi.protocol).
        http="authpi.protocol:LimitedHttpToolsProtocol",
    )
