"""Another server process's SQLite writer, driven line by line from a test (tests/core/
test_sqlite_writer_queue.py): ``hold`` opens a write transaction and keeps it, ``commit`` ends it,
``write`` writes and commits once, printing how long it waited."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from authpi.settings import Settings
from authpi.storage.db import make_engine


async def main(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url, database_statement_timeout=5.0))
    loop = asyncio.get_running_loop()
    held = None
    for line in iter(sys.stdin.readline, ""):
        command = line.strip()
        if command == "hold":
            held = await engine.connect()
            await held.execute(text("INSERT INTO writes (who) VALUES ('holder')"))
        elif command == "commit" and held is not None:
            await held.commit()
            await held.close()
            held = None
        elif command == "write":
            started = loop.time()
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO writes (who) VALUES ('holder')"))
            command = f"write {loop.time() - started:.3f}"
        print(command, flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
