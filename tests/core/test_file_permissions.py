"""The data directory and everything in it (SQLite database, -wal, -shm, the writers' lock file,
master key) belong to the server's user alone: 0700 and 0600, also when an older version left them
world-readable."""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.harness import RunningServer, run_server


def modes(data_dir: Path) -> dict[str, str]:
    """Octal permission bits of the directory (as ".") and of every entry in it."""
    found = {".": oct(stat.S_IMODE(data_dir.stat().st_mode))}
    for entry in data_dir.iterdir():
        found[entry.name] = oct(stat.S_IMODE(entry.lstat().st_mode))
    return found


def write_something(server: RunningServer) -> None:
    """A Core write, so SQLite has its -wal and -shm files open."""
    with httpx.Client(base_url=server.url, auth=server.api_key, timeout=30) as http:
        created = http.post(f"/v1/accounts/{server.account_id}/issuers", json={"name": "permissions"})
    assert created.status_code == 201, created.text


def expected_files(backend: str) -> set[str]:
    files = {".", "master.key"}
    if backend == "sqlite":
        files |= {"authpi.db", "authpi.db-wal", "authpi.db-shm", "authpi.db.writer"}
    return files


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fresh_data_dir_is_private(backend: str) -> None:
    skip_without_postgres(backend)
    with run_server(backend) as server:
        write_something(server)
        found = modes(server.data_dir)
    assert set(found) == expected_files(backend), found
    assert found == {name: "0o700" if name == "." else "0o600" for name in found}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_data_dir_left_world_readable_is_tightened_at_start(backend: str) -> None:
    skip_without_postgres(backend)
    with tempfile.TemporaryDirectory(prefix="authpi-old-") as tmp:
        old = Path(tmp) / "data"
        old.mkdir(mode=0o755)
        old.chmod(0o755)
        key = old / "master.key"
        key.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
        key.chmod(0o644)
        if backend == "sqlite":
            (old / "authpi.db").touch(mode=0o644)
            (old / "authpi.db").chmod(0o644)
        assert modes(old)["."] == "0o755"
        with run_server(backend, {"AUTHPI_DATA_DIR": str(old)}) as server:
            write_something(server)
            found = modes(old)
    assert set(found) == expected_files(backend), found
    assert found == {name: "0o700" if name == "." else "0o600" for name in found}
