"""Stopping the server: SIGTERM ends it within AUTHPI_SHUTDOWN_TIMEOUT even while a client holds a
request open, with exit status 0, and the request cut off gets an answer rather than a traceback."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.serve_process import ServeProcess, serve_process

SHUTDOWN_TIMEOUT = 2
DECLARED = 200
FIRST_PART = b'{"name": "slow'


def _slow_upload(server: ServeProcess) -> socket.socket:
    """A Core API create whose body arrives only in part: the request stays in flight."""
    path = f"/v1/accounts/{server.credentials['account_id']}/issuers"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {server.basic_auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head.encode() + FIRST_PART)
    return sock


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_ends_a_slow_request_within_the_timeout_and_exits_0(backend: str) -> None:
    skip_without_postgres(backend)
    with serve_process(backend, {"AUTHPI_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}) as server:
        slow = _slow_upload(server)
        try:
            time.sleep(0.5)  # the request reached the application, which waits for the rest of the body
            status, took = server.terminate(timeout=SHUTDOWN_TIMEOUT + 20)
            answer = _answer(slow)
        finally:
            slow.close()
        log = server.log()
    assert status == 0, log
    assert took < SHUTDOWN_TIMEOUT + 3, (took, log)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"retry-after: 1" in answer.lower() and b"connection: close" in answer.lower(), answer
    assert "Traceback" not in log, log


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_exits_0_with_any_number_of_workers(workers: int) -> None:
    with serve_process("sqlite", workers=workers) as server:
        status, _ = server.terminate(timeout=30)
        log = server.log()
    assert status == 0, log
    assert "Traceback" not in log, log


def test_a_request_that_finishes_within_the_timeout_is_answered() -> None:
    """Graceful still means graceful: a request completed during the shutdown gets its answer."""
    with serve_process("sqlite", {"AUTHPI_SHUTDOWN_TIMEOUT": "20"}) as server:
        slow = _slow_upload(server)
        try:
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1)
            rest = b'"}'
            slow.sendall(rest + b" " * (DECLARED - len(FIRST_PART) - len(rest)))  # JSON allows the spaces
            answer = _answer(slow)
        finally:
            slow.close()
        status = server.proc.wait(30)
        log = server.log()
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    assert status == 0, log
