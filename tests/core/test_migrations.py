"""``authpi migrate`` builds exactly the schema the models describe, on SQLite and PostgreSQL.

After migrating a fresh database, Alembic's autogenerate comparison (the same options as the
migrations' env.py) must find nothing to add, drop or alter: a model change without its migration, or
a migration that drifted from the models, fails here. Running the command again must be a no-op.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from authpi.settings import Settings
from authpi.storage.migrate import alembic_config
from authpi.storage.tables import Base
from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import database


def _migrate(data_dir: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTHPI_DATA_DIR": str(data_dir)}
    env.pop("AUTHPI_DATABASE_URL", None)
    if database_url:
        env["AUTHPI_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "authpi", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )


def _compare(connection: Connection) -> tuple[str | None, list[Any]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return context.get_current_revision(), compare_metadata(context, Base.metadata)


async def _inspect(settings: Settings) -> tuple[str | None, list[Any]]:
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrated_schema_matches_the_models_and_migrate_is_idempotent(backend: str, tmp_path: Path) -> None:
    skip_without_postgres(backend)
    data_dir = tmp_path / "data"
    with database(backend, tmp_path) as database_url:
        first = _migrate(data_dir, database_url)
        assert first.returncode == 0, first.stderr
        assert "database is up to date" in first.stdout

        settings = Settings(data_dir=data_dir, database_url=database_url)
        revision, differences = asyncio.run(_inspect(settings))
        head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
        assert revision == head
        assert differences == [], "the migrations and the models disagree:\n" + "\n".join(
            map(repr, differences)
        )

        again = _migrate(data_dir, database_url)
        assert again.returncode == 0, again.stderr
        assert "database is up to date" in again.stdout
        assert asyncio.run(_inspect(settings)) == (head, [])
