"""One SQLite writer at a time, taken deliberately.

SQLite has one write lock per database. Left to itself, every connection that wants to write spins
in SQLite's busy handler (sleeping and polling) until the lock frees or ``busy_timeout`` ends, and
meanwhile holds a pooled connection: under load the pool drains and requests fail. Instead:

* in each process, a statement that starts writing first waits its turn on an asyncio lock (FIFO,
  no polling), so at most one connection per worker process ever asks SQLite for the write lock;
* it then opens the transaction with ``BEGIN IMMEDIATE``, which takes SQLite's write lock up front
  (waiting ``busy_timeout`` for another process's writer) rather than failing later on an upgrade;
* a ``SELECT … FOR UPDATE`` (which SQLite does not know) counts as starting to write: the read-modify-
  write that follows happens inside the write transaction, on the latest data, as with PostgreSQL's
  row lock;
* the turn ends when the connection goes back to the pool (after its COMMIT or ROLLBACK), or is
  invalidated.

Reads outside a write transaction never wait: pysqlite runs them in autocommit, and WAL lets them
proceed next to the writer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, ExecutionContext
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.selectable import GenerativeSelect
from sqlalchemy.util import await_only

_HOLDS_TURN = "authpi_write_turn"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriterBusy(OperationalError):
    """The turn to write did not come within the wait limit (recognised as "database is locked")."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(
            "BEGIN IMMEDIATE", None, Exception(f"database is locked (no turn to write in {waited_s:g} s)")
        )


def _starts_writing(statement: str, context: ExecutionContext | None) -> bool:
    if any(getattr(context, kind, False) for kind in ("isinsert", "isupdate", "isdelete")):
        return True
    compiled = getattr(context, "compiled", None)
    target = getattr(compiled, "statement", None)
    if isinstance(target, GenerativeSelect) and target._for_update_arg is not None:
        return True
    return statement.lstrip().upper().startswith(_WRITES)


class WriteTurns:
    """The per-process queue of SQLite writers of one engine."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._lock = asyncio.Lock()

    async def _acquire(self) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), self.wait_s)
        except TimeoutError as exc:
            raise WriterBusy(self.wait_s) from exc

    def before_execute(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        _parameters: Any,
        context: ExecutionContext | None,
        _executemany: bool,
    ) -> None:
        if conn.info.get(_HOLDS_TURN) or not _starts_writing(statement, context):
            return
        driver = conn.connection.driver_connection
        if driver is not None and driver.in_transaction:
            return  # already writing (begun by the driver itself): nothing to take
        await_only(self._acquire())
        conn.info[_HOLDS_TURN] = True
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release(conn.info)
            raise

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS_TURN, False) and self._lock.locked():
            self._lock.release()

    def on_pool_event(self, _dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is not None:
            self._release(record.info)


def serialise_writes(engine: AsyncEngine, wait_s: float) -> None:
    """Make ``engine`` (SQLite) take write turns as described above."""
    turns = WriteTurns(wait_s)
    event.listen(engine.sync_engine, "before_cursor_execute", turns.before_execute)
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
        event.listen(engine.sync_engine.pool, name, turns.on_pool_event)
