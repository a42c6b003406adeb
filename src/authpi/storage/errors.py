"""Recognising database failures that are transient rather than bugs."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError


def is_busy(exc: BaseException) -> bool:
    """SQLite could not get its write lock within busy_timeout, or PostgreSQL aborted a transaction
    for a serialization/deadlock conflict: retrying the request is the right answer (503)."""
    if isinstance(exc, OperationalError) and "database is locked" in str(exc):
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        return code in ("40001", "40P01")
    return False
