"""SQLite writers of different processes take turns through a file lock next to the database
(storage.sqlite_writes): a writer that gives up waiting for it (cancelled, or past the wait limit)
leaves nothing held, in its own process or for the others."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authpi.settings import Settings
from authpi.storage.db import make_engine
from authpi.storage.sqlite_writes import WriterBusy

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Holder:
    """tests/core/sqlite_writer_holder.py in its own process."""

    def __init__(self, database_url: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.core.sqlite_writer_holder", database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )

    async def send(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 20)
        assert answer.startswith(command), answer
        return answer.strip()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


async def _write(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO writes (who) VALUES ('test')"))


def _lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor also drops a lock taken just now
    return True


@pytest.mark.parametrize("gives_up", ["cancelled", "timed_out"])
async def test_a_writer_that_gives_up_waiting_leaks_no_lock(tmp_path: Path, gives_up: str) -> None:
    database = tmp_path / "authpi.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = make_engine(Settings(database_url=url, database_statement_timeout=1.0))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE writes (who TEXT NOT NULL)"))
    lock_path = f"{database}.writer"
    holder = Holder(url)
    try:
        await holder.send("hold")  # the other process's writer holds the turn
        assert not _lock_is_free(lock_path)
        waiter = asyncio.create_task(_write(engine))
        await asyncio.sleep(0.3)
        assert not waiter.done()  # queued behind the other process, not failing or writing
        if gives_up == "cancelled":
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        else:
            with pytest.raises(WriterBusy):
                await waiter  # past the 1 s wait limit: a busy database (503), not a 500
        await holder.send("commit")
        # The abandoned wait gets the lock when the holder lets go, and hands it straight back ...
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while not _lock_is_free(lock_path):
            assert loop.time() < deadline, "the abandoned wait kept the file lock"
            await asyncio.sleep(0.01)
        # ... and this process's turn: its next writer goes at once, and the other process after it.
        started = loop.time()
        await asyncio.wait_for(_write(engine), 0.9)
        assert loop.time() - started < 0.5
        waited = float((await holder.send("write")).split()[1])
        assert waited < 0.5
        assert _lock_is_free(lock_path)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT who FROM writes ORDER BY rowid"))).scalars().all()
        assert rows == ["holder", "test", "holder"]  # the given-up write wrote nothing
    finally:
        holder.close()
        await engine.dispose()


async def test_writers_of_two_processes_alternate_without_polling(tmp_path: Path) -> None:
    """The other process's writer is woken the moment the lock is released, not after SQLite's busy
    handler's next sleep: a queued write completes within milliseconds of the commit it waits for."""
    database = tmp_path / "authpi.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = make_engine(Settings(database_url=url, database_statement_timeout=5.0))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE writes (who TEXT NOT NULL)"))
    holder = Holder(url)
    loop = asyncio.get_running_loop()
    delays = []
    try:
        for _ in range(5):
            await holder.send("hold")
            waiter = asyncio.create_task(_write(engine))
            # Long enough for SQLite's busy handler to be in its 100 ms sleeps.
            await asyncio.sleep(0.5)
            assert not waiter.done()
            await holder.send("commit")
            released = loop.time()
            await waiter
            delays.append(loop.time() - released)
        assert sorted(delays)[2] < 0.02, delays
    finally:
        holder.close()
        await engine.dispose()
