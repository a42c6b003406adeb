"""A database that stays locked past busy_timeout is a retryable 503, never a 500."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import OperationalError

from authpi.storage.errors import is_busy


def test_sqlite_lock_timeouts_are_recognised_as_busy() -> None:
    locked = OperationalError("INSERT …", {}, sqlite3.OperationalError("database is locked"))
    assert is_busy(locked)
    assert not is_busy(OperationalError("SELECT …", {}, sqlite3.OperationalError("no such table: x")))
    assert not is_busy(ValueError("database is locked"))
