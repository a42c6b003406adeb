"""uvicorn's httptools protocol with limits on the request head (request line plus headers).

httptools has no such limit: it accumulates a header of any size in memory (by repeated
concatenation, so a 64 MiB header also costs the event loop seconds of copying and stalls every other
connection of the worker). This subclass counts the head as it arrives and answers ``431 Request
Header Fields Too Large`` and closes the connection once it passes ``AUTHPI_MAX_HEADER_BYTES`` bytes or
``AUTHPI_MAX_HEADERS`` fields, and with ``408`` when a head takes longer than
``AUTHPI_HEADER_TIMEOUT`` seconds to arrive. Two counts, because httptools reports a header only once
it is complete:

* the raw bytes received while a head is incomplete, checked after every read (so at most one read
  beyond the limit is ever parsed);
* the exact size of the URL and of each header as the parser reports them, so a head that arrives
  whole in one read is measured too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from authpi.http.errors import error_body
from authpi.observability import request_id
from authpi.settings import get_settings

# CR LF after the request line and after each header, ": " between a name and its value.
_LINE_OVERHEAD = 4


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, answered with 431."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """The protocol ``authpi serve`` runs (``uvicorn.run(http=...)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.head_timeout = settings.header_timeout
        self.head_timer: asyncio.TimerHandle | None = None
        self.reading_head = True  # between requests, the next bytes start a head
        self.raw_head_bytes = 0
        self.head_bytes = 0
        self.header_count = 0
        self.heads_completed = 0
        self.head_refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_head_timer()  # a connection that never sends a head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.head_refused:
            return
        was_reading_head = self.reading_head
        heads_before = self.heads_completed
        super().data_received(data)
        if self.head_refused or not was_reading_head or self.heads_completed != heads_before:
            return
        # The head this read continued is still incomplete, so all of the read belongs to it. (A
        # read that completes one message and starts the next head is not counted: a pipelined
        # head may thus pass the limit by one read, never by more.)
        self.raw_head_bytes += len(data)
        if self.raw_head_bytes > self.max_head_bytes:
            self.refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_head_timer()
        self.reading_head = True
        self.raw_head_bytes = self.head_bytes = self.header_count = 0

    def on_url(self, url: bytes) -> None:
        self.count(len(url) + _LINE_OVERHEAD, fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count(len(name) + len(value) + _LINE_OVERHEAD, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.cancel_head_timer()
        self.reading_head = False
        self.heads_completed += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.raw_head_bytes = 0

    def count(self, size: int, *, fields: int) -> None:
        self.head_bytes += size
        self.header_count += fields
        if self.head_bytes > self.max_head_bytes or self.header_count > self.max_headers:
            self.head_refused = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; the one raised by ``count`` is a 431.
        if self.head_refused:
            self.refuse_head()
        else:
            super().send_400_response(msg)

    def arm_head_timer(self) -> None:
        self.cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout, self.head_timed_out)

    def cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        """Slow heads (one byte every few seconds, "slowloris") would hold a connection forever."""
        self.head_timer = None
        if not self.reading_head or self.head_refused:
            return
        self.head_refused = True
        if self.head_bytes == 0 and self.raw_head_bytes == 0:
            # Nothing sent yet (e.g. a browser's preconnect): close quietly, since a client that
            # sends its request at this very moment would read an unsolicited 408 as the answer.
            self.transport.close()
            return
        description = f"The request line and headers must arrive within {self.head_timeout:g} seconds"
        self.answer_and_close(408, "request_timeout", description)

    def refuse_head(self) -> None:
        self.head_refused = True
        description = (
            f"The request line and headers must stay within {self.max_head_bytes} bytes "
            f"and {self.max_headers} fields"
        )
        self.answer_and_close(431, "request_header_fields_too_large", description)

    def answer_and_close(self, status: int, error: str, description: str) -> None:
        self.cancel_head_timer()
        if self.transport.is_closing():
            return
        # The Core API envelope; its error and error_description also make it an OAuth error body.
        body = json.dumps(error_body(status, error, description, retryable=False)).encode()
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"cache-control: no-store\r\n",
            # Refused before the application: no incoming ID was read, so the answer gets a new one.
            b"x-request-id: " + request_id.new().encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
