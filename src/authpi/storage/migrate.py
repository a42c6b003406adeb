"""Run Alembic migrations programmatically (on start-up and through ``authpi migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from authpi import data_dir
from authpi.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings) -> None:
    if settings.sqlite_path is not None:
        data_dir.prepare(settings.data_dir, database=settings.sqlite_path)
    command.upgrade(alembic_config(settings), "head")
