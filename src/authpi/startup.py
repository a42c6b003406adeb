"""What every command checks before it does anything: the settings, the master key, the database.

A mistake in any of them stops the command with one line naming it (``StartupError``, printed by
``authpi.cli``) instead of a traceback, or worse a server that starts and then fails its requests.
Also the public URL ``authpi serve`` publishes when none is configured, and the warnings for one
that does not fit the address the server listens on.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

from alembic.util.exc import CommandError
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from authpi.crypto.secretbox import SecretBox, load_master_key, master_key_file
from authpi.services import master_key
from authpi.settings import Settings, get_settings
from authpi.storage.db import make_engine, make_sessionmaker


class StartupError(Exception):
    """A setting, the master key or the database is unusable; the message is one line for the operator."""


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise StartupError(describe_invalid_settings(exc)) from None


def describe_invalid_settings(exc: ValidationError) -> str:
    """``AUTHPI_X: what is wrong`` for each invalid variable. The values are never repeated: they
    may be secrets (the master key, a password in the database URL)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = f"AUTHPI_{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid setting: " + "; ".join(problems)


def prepare(settings: Settings) -> None:
    """Load the master key, migrate the database and check the key against it. Every command that
    uses the database runs this first."""
    box = _secret_box(settings)
    try:
        from authpi.storage.migrate import upgrade

        upgrade(settings)
        asyncio.run(_verify_master_key(settings, box))
    except master_key.WrongMasterKey:
        source = "AUTHPI_MASTER_KEY" if settings.master_key else f"the key file {_key_file(settings)}"
        raise StartupError(
            f"the master key ({source}) is not the one this database's secrets were sealed with; "
            "start with the key the database was created with"
        ) from None
    except (OSError, SQLAlchemyError, CommandError) as exc:
        raise StartupError(f"cannot use the database {_shown_database(settings)}: {_reason(exc)}") from None


def _secret_box(settings: Settings) -> SecretBox:
    try:
        return SecretBox(load_master_key(settings.master_key, settings.data_dir))
    except ValueError as exc:
        raise StartupError(f"the key file {_key_file(settings)} {exc}") from None
    except OSError as exc:
        raise StartupError(f"cannot use the data directory {settings.data_dir}: {_reason(exc)}") from None


async def _verify_master_key(settings: Settings, box: SecretBox) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            await master_key.verify(session, box)
    finally:
        await engine.dispose()


def _key_file(settings: Settings) -> str:
    return str(master_key_file(settings.data_dir))


def _shown_database(settings: Settings) -> str:
    shown = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    return f"AUTHPI_DATABASE_URL={shown}" if settings.database_url else shown


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # a DBAPIError's driver message, without the SQL and links
    if isinstance(orig, BaseException):
        exc = orig
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
    return text.strip().splitlines()[0]


# --- the public URL ---------------------------------------------------------------------------------


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None  # a name


def _loopback(host: str) -> bool:
    address = _address(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _every_interface(host: str) -> bool:
    address = _address(host)
    return not host or (address is not None and address.is_unspecified)


def default_public_url(host: str, port: int) -> str:
    """The URL clients reach ``authpi serve --host HOST --port PORT`` at, as far as it can tell."""
    if _every_interface(host):
        host = "localhost"  # every interface: the one name that surely reaches it is this machine's
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def public_url_warnings(settings: Settings, host: str, port: int) -> list[str]:
    """Why the public URL probably is not where clients reach this server (empty when it looks right)."""
    if settings.public_url is None:
        if _every_interface(host):
            return [
                f"AUTHPI_PUBLIC_URL is not set: issuer URLs use {default_public_url(host, port)}, "
                "which other machines cannot reach; set it to the URL clients use"
            ]
        return []
    parts = urlsplit(settings.public_url)
    public_host = parts.hostname or ""
    public_port = parts.port or (443 if parts.scheme == "https" else 80)
    warnings = []
    if _loopback(public_host) and parts.scheme == "http" and public_port != port:
        warnings.append(
            f"AUTHPI_PUBLIC_URL {settings.public_url} names port {public_port} of this machine, "
            f"but the server listens on port {port}: clients will not reach the issuer URLs"
        )
    if parts.scheme == "http" and not _loopback(public_host):
        warnings.append(
            f"AUTHPI_PUBLIC_URL {settings.public_url} is plain http on a network address: tokens, "
            "passwords and cookies would travel unencrypted; use https (e.g. behind a TLS proxy)"
        )
    return warnings
