"""Recognising database failures that are transient rather than bugs.

Two kinds, both answered ``503`` with ``Retry-After`` (see ``authpi.availability``):

* *busy*: the database is there but could not serve this request in time (a lock wait past the
  busy timeout, a serialization conflict, a statement timeout, no free pooled connection);
* *unavailable*: the database cannot be reached or stopped answering (connection refused, reset or
  timed out, server shutting down). This also opens the outage breaker (``storage.health``).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# PostgreSQL SQLSTATEs: class 08 is "connection exception"; the rest mean the server is going away
# or refuses new sessions.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# Serialization failure, deadlock, statement timeout (query_canceled), lock wait timeout.
_BUSY_STATES = frozenset({"40001", "40P01", "57014", "55P03"})


class DatabaseUnavailable(Exception):
    """Refused without trying: the database is known to be unreachable (the outage breaker is open)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the driver errors it wraps (asyncpg errors arrive wrapped in SQLAlchemy's,
    which keep the driver's SQLSTATE; timeouts and socket errors arrive raw). Causes are not
    followed: an error of another service (e.g. Redis) caused by a socket error is not the
    database's."""
    current: BaseException | None = exc
    for _ in range(4):
        if current is None:
            return
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else None


def _sqlstate(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else ""


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached, or the connection to it broke or timed out."""
    for err in _chain(exc):
        if isinstance(err, DatabaseUnavailable | ConnectionError | TimeoutError):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        state = _sqlstate(err)
        if state.startswith("08") or state in _UNAVAILABLE_STATES:
            return True
    return False


def is_busy(exc: BaseException) -> bool:
    """SQLite could not get its write lock within busy_timeout, PostgreSQL aborted a transaction for
    a conflict or a statement timeout, or no pooled connection came free in time: retrying the
    request is the right answer (503)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, OperationalError) and "database is locked" in str(exc):
        return True
    if isinstance(exc, DBAPIError):
        return _sqlstate(exc.orig) in _BUSY_STATES if exc.orig is not None else False
    return False


def is_transient(exc: BaseException) -> bool:
    return is_busy(exc) or is_unavailable(exc)
