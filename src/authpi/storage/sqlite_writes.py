"""One SQLite writer at a time, taken deliberately.

SQLite has one write lock per database. Left to itself, every connection that wants to write spins
in SQLite's busy handler (sleeping and polling) until the lock frees or ``busy_timeout`` ends, and
meanwhile holds a pooled connection: under load the pool drains and requests fail. Instead:

* in each process, a statement that starts writing first waits its turn on an asyncio lock (FIFO,
  no polling), so at most one connection per worker process ever asks SQLite for the write lock;
* across processes, the turn's holder then takes an OS file lock (``flock`` on ``<database>.writer``,
  next to the database). Waiting for it happens in a thread of its own, so the event loop runs on,
  and the kernel wakes the next process's writer the moment the lock is released. Left to SQLite's
  busy handler, the worker processes would hand the write lock to each other by sleeping and polling
  with growing delays: each hand-off cost milliseconds of idle wait and wake-ups, and writes ran at
  half speed as soon as two processes wrote (bench/README.md, "Emission after the one-statement
  change");
* the transaction then begins with ``BEGIN IMMEDIATE`` (sent by pysqlite in the same call as the
  first INSERT/UPDATE/DELETE, or by us before a ``SELECT … FOR UPDATE``), which takes SQLite's
  write lock up front (waiting ``busy_timeout`` for a writer that does not take the file lock, e.g.
  a migration or another tool) rather than failing later on an upgrade;
* a ``SELECT … FOR UPDATE`` (which SQLite does not know) counts as starting to write: the read-modify-
  write that follows happens inside the write transaction, on the latest data, as with PostgreSQL's
  row lock;
* the turn (file lock, then the process's lock) ends when the connection goes back to the pool
  (after its COMMIT or ROLLBACK), or is invalidated. A writer that gives up waiting (the wait limit,
  or its task cancelled) while its thread still waits for the file lock leaves the process's turn to
  that thread: when the lock comes, the thread's completion releases it at once and only then the
  process's turn, so no lock is ever left held and no two writers of a process share it.

Reads outside a write transaction never wait: pysqlite runs them in autocommit, and WAL lets them
proceed next to the writer.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
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


def _driver_begins(statement: str) -> bool:
    """Whether pysqlite itself begins a transaction before ``statement`` (it does before INSERT,
    UPDATE, DELETE and REPLACE; with ``isolation_level = "IMMEDIATE"``, set on every connection in
    ``storage.db``, it sends ``BEGIN IMMEDIATE``). That saves the write transaction a round trip to
    the connection's thread while this process holds the turn."""
    return statement.lstrip().upper().startswith(_WRITES)


class WriterFileLock:
    """The cross-process part of the turn: an exclusive ``flock`` on a file next to the database.

    ``flock`` locks belong to an open file description, so each process opens the file itself (a
    descriptor inherited through ``fork`` would be shared, and lock nothing between the two); the
    one blocking wait of a process runs on a thread of its own (the process's turn already makes
    sure there is only one at a time).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid = -1
        self._fd = -1
        self._waiter: ThreadPoolExecutor | None = None

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authpi-sqlite-writer")
        return self._fd

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def wait(self) -> asyncio.Future[None]:
        """Waits for the lock in the waiter thread; the future completes once it is held."""
        fd = self._descriptor()
        assert self._waiter is not None
        return asyncio.get_running_loop().run_in_executor(self._waiter, fcntl.flock, fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class WriteTurns:
    """The queue of SQLite writers of one engine: per process, then across processes."""

    def __init__(self, wait_s: float, file_lock: WriterFileLock | None = None) -> None:
        self.wait_s = wait_s
        self._lock = asyncio.Lock()
        self._file_lock = file_lock

    async def _acquire(self) -> None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._lock.acquire(), self.wait_s)
        except TimeoutError as exc:
            raise WriterBusy(self.wait_s) from exc
        if self._file_lock is None or self._file_lock.try_acquire():
            return
        try:
            waiting = self._file_lock.wait()
        except BaseException:
            self._lock.release()
            raise
        left_s = max(self.wait_s - (time.monotonic() - started), 0.0)
        try:
            # shield: giving up must not abandon the thread's wait, whose outcome is handled below.
            await asyncio.wait_for(asyncio.shield(waiting), left_s)
        except BaseException as exc:
            waiting.add_done_callback(self._hand_back)
            if isinstance(exc, TimeoutError):
                raise WriterBusy(self.wait_s) from exc
            raise

    def _hand_back(self, waited: asyncio.Future[None] | Future[None]) -> None:
        """The abandoned wait ended: give the file lock back if it was taken, then the turn."""
        try:
            if not waited.cancelled() and waited.exception() is None and self._file_lock is not None:
                self._file_lock.release()
        finally:
            self._lock.release()

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
        if _driver_begins(statement):
            return  # the driver opens the transaction in the same call (isolation_level IMMEDIATE)
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release(conn.info)
            raise

    def _release(self, info: dict[Any, Any]) -> None:
        if not info.pop(_HOLDS_TURN, False):
            return
        try:
            if self._file_lock is not None:
                self._file_lock.release()
        finally:
            if self._lock.locked():
                self._lock.release()

    def on_pool_event(self, _dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is not None:
            self._release(record.info)


def writer_lock_path(engine: AsyncEngine) -> str | None:
    """``<database>.writer`` for a database file; None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{os.path.abspath(database)}.writer"


def serialise_writes(engine: AsyncEngine, wait_s: float) -> None:
    """Make ``engine`` (SQLite) take write turns as described above."""
    path = writer_lock_path(engine)
    turns = WriteTurns(wait_s, WriterFileLock(path) if path else None)
    event.listen(engine.sync_engine, "before_cursor_execute", turns.before_execute)
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):
        event.listen(engine.sync_engine.pool, name, turns.on_pool_event)
