"""A TCP proxy between the server and PostgreSQL that tests break on purpose.

It runs its own asyncio loop in a thread (the harness starts the server synchronously, and the
server must reach its database meanwhile). Three modes:

* ``forward``: bytes flow both ways;
* ``down``: the listening socket is closed and every link cut, so connecting is refused, as with a
  stopped PostgreSQL;
* ``frozen``: connections are accepted and bytes read, but nothing is forwarded or answered, as with
  a hung PostgreSQL (or a network black hole). Back to ``forward``, the links that froze are cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "forward"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *_: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def forward(self) -> None:
        self._call(self._set("forward"))

    def down(self) -> None:
        self._call(self._set("down"))

    def freeze(self) -> None:
        self._call(self._set("frozen"))

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _set(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        if mode == "down" or previous == "frozen":
            await self._stop()  # cut every link (and stop listening)
        if mode != "down" and self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode == "frozen":
            await self._swallow(reader)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self.mode != "forward":
                    continue  # frozen: the bytes vanish, nobody answers
                writer.write(data)
                await writer.drain()
        writer.close()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while await reader.read(65536):
                pass
