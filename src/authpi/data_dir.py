"""The data directory holds the SQLite database (with its -wal and -shm files) and the master key
file: only the server's own user may list or read it (directory 0700, files 0600)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("authpi")
DIR_MODE = 0o700
FILE_MODE = 0o600


def prepare(data_dir: Path, *, database: Path | None = None) -> None:
    """Create the directory private, and tighten one (and the files in it) left by older versions,
    which created them 0755/0644. ``database`` is created empty with mode 0600 when missing, because
    SQLite gives a new database the process umask's mode and its -wal and -shm files the database's."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        _restrict(data_dir, DIR_MODE)
        for entry in data_dir.iterdir():
            if entry.is_file() and not entry.is_symlink():
                _restrict(entry, FILE_MODE)
    except PermissionError:  # a directory owned by someone else: the operator's choice
        log.warning("cannot restrict the permissions of %s", data_dir)
    if database is not None and not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))


def _restrict(path: Path, mode: int) -> None:
    if path.stat().st_mode & 0o777 != mode:
        path.chmod(mode)
