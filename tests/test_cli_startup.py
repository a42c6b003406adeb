"""Start-up checks: every command refuses a bad setting, an unusable database or a master key that
is not the database's with one line on stderr (``authpi: error: ...``) and a non-zero exit status,
never a traceback, and never by starting to serve."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import database, free_port
from tests.serve_process import ServeProcess, authpi, cli_env, serve_process

COMMANDS = [
    ("migrate",),
    ("serve", "--port", "0"),  # replaced by a free port below
    ("bootstrap",),
    ("accounts", "create", "--name", "Another"),
    ("keys", "rotate"),
]
BAD_SETTINGS = {
    "log level": {"AUTHPI_LOG_LEVEL": "loud"},
    "rate limit": {"AUTHPI_RATE_LIMIT_LOGIN": "lots per minute"},
    "zero rate limit": {"AUTHPI_RATE_LIMIT_CORE": "0/minute"},
    "master key not base64": {"AUTHPI_MASTER_KEY": "this is not base64!"},
    "master key too short": {"AUTHPI_MASTER_KEY": base64.urlsafe_b64encode(b"short").decode()},
    "database URL": {"AUTHPI_DATABASE_URL": "not a url"},
    "unsupported database": {"AUTHPI_DATABASE_URL": "mysql://root@localhost/authpi"},
    "sync driver": {"AUTHPI_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1/authpi"},
    "unreachable database": {"AUTHPI_DATABASE_URL": "postgresql://postgres:hunter2@127.0.0.1:9/authpi"},
    "public URL": {"AUTHPI_PUBLIC_URL": "localhost:8000"},
    "trusted proxies": {"AUTHPI_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"},
    "number": {"AUTHPI_PURGE_AFTER": "thirty days"},
    "shutdown timeout": {"AUTHPI_SHUTDOWN_TIMEOUT": "-1"},
    "data directory": {"AUTHPI_DATA_DIR": "/proc/authpi-cannot-be-here"},
}


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def command_line(command: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(free_port()) if part == "0" else part for part in command)


def assert_refused(done: object, *expected: str) -> str:
    """One line on stderr, naming the problem; a non-zero status. Returns the line."""
    assert done.returncode != 0, (done.stdout, done.stderr)  # type: ignore[attr-defined]
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("authpi: error: "), stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def empty_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="authpi-cli-") as tmp:
        yield Path(tmp)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("case", BAD_SETTINGS, ids=str)
def test_a_bad_setting_is_one_line_and_a_failure(
    case: str, command: tuple[str, ...], empty_dir: Path
) -> None:
    setting = BAD_SETTINGS[case]
    done = authpi(cli_env(empty_dir / "data", None, setting), *command_line(command), timeout=60)
    line = assert_refused(done, *(name for name in setting if name != "AUTHPI_DATA_DIR"))
    assert "hunter2" not in line and "this is not base64" not in line  # values may be secrets


def test_a_missing_postgres_database_is_one_line(empty_dir: Path) -> None:
    skip_without_postgres("postgres")
    admin = os.environ["AUTHPI_TEST_DATABASE_URL"]
    url = admin.rsplit("/", 1)[0] + "/authpi_no_such_database"
    for command in COMMANDS:
        done = authpi(cli_env(empty_dir, url), *command_line(command), timeout=60)
        assert_refused(done, "authpi_no_such_database", "does not exist")


def test_a_corrupt_key_file_is_one_line(empty_dir: Path) -> None:
    data = empty_dir / "data"
    assert authpi(cli_env(data, None), "migrate").returncode == 0
    (data / "master.key").write_text("garbage")
    for command in COMMANDS:
        assert_refused(authpi(cli_env(data, None), *command_line(command), timeout=60), "master.key")


# --- the master key against the database --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_master_key_is_refused_by_every_command(backend: str, empty_dir: Path) -> None:
    skip_without_postgres(backend)
    with database(backend, empty_dir) as db_url:
        right = cli_env(empty_dir / "data", db_url, {"AUTHPI_MASTER_KEY": new_key()})
        assert authpi(right, "bootstrap").returncode == 0
        wrong = {**right, "AUTHPI_MASTER_KEY": new_key()}
        for command in COMMANDS:
            assert_refused(authpi(wrong, *command_line(command), timeout=60), "AUTHPI_MASTER_KEY", "sealed")
        done = authpi(right, "migrate")
        assert done.returncode == 0, done.stderr


def test_a_lost_key_file_is_refused(empty_dir: Path) -> None:
    env = cli_env(empty_dir / "data", None)
    assert authpi(env, "bootstrap").returncode == 0
    (empty_dir / "data" / "master.key").unlink()  # the next start makes a new, different key
    assert_refused(authpi(env, "migrate"), "master.key", "sealed")


async def remove_check_value(server: ServeProcess) -> None:
    """Make the database look like one from before the check value existed."""
    statement = "DELETE FROM system_values WHERE key = 'master_key_check'"
    db_url = server.env.get("AUTHPI_DATABASE_URL")
    if db_url is None:
        with sqlite3.connect(Path(server.env["AUTHPI_DATA_DIR"]) / "authpi.db") as db:
            db.execute(statement)
        return
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upgraded_database_is_checked_against_its_signing_keys(backend: str) -> None:
    skip_without_postgres(backend)
    with serve_process(backend, {"AUTHPI_MASTER_KEY": new_key()}) as server:
        issuer = httpx.post(
            f"{server.url}/v1/accounts/{server.credentials['account_id']}/issuers",
            json={"name": "has keys"},
            headers={"Authorization": server.basic_auth},
        ).json()["data"]["id"]
        assert httpx.get(f"{server.url}/{issuer}/jwks.json").status_code == 200  # keys made
        assert server.terminate(timeout=30)[0] == 0
        asyncio.run(remove_check_value(server))
        wrong = {**server.env, "AUTHPI_MASTER_KEY": new_key()}
        assert_refused(authpi(wrong, "migrate"), "sealed")
        assert authpi(server.env, "migrate").returncode == 0  # the right key passes, and is sealed anew
        assert_refused(authpi(wrong, "migrate"), "sealed")
