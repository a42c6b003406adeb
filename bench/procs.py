"""Starting and stopping the servers under test, and reading their CPU time and memory.

Everything started here is stopped here (``with`` blocks), including a PostgreSQL database created
for the run. CPU time is the sum of user + system time over the server's whole process tree
(supervisor and workers), read before and after each measured scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / "bench" / "peer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start ({url}):\n" + log.read_text()[-4000:])
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process we started (its workers follow it), then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        _gone, alive = psutil.wait_procs(tree, timeout=5)
        for child in alive:
            child.kill()


@dataclass
class Server:
    """A running server process tree (ours or the peer)."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                continue
        return total

    def workers(self) -> list[psutil.Process]:
        """The request-serving processes: uvicorn's spawned workers / node's cluster workers."""
        out = []
        for proc in self.tree()[1:]:
            try:
                cmd = " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "resource_tracker" in cmd:
                continue
            out.append(proc)
        return out

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for proc in self.workers():
            try:
                sizes.append(proc.memory_info().rss / 1024 / 1024)
            except psutil.NoSuchProcess:
                continue
        return sizes


def postgres_cpu_seconds(database: str | None = None) -> float:
    """CPU time of the PostgreSQL backends serving ``database`` (their process title names it), or
    of every PostgreSQL process when ``database`` is None."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if not (proc.info["name"] or "").startswith("postgres"):
                continue
            if database is not None and database not in " ".join(proc.info["cmdline"] or []):
                continue
            times = proc.cpu_times()
            total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def busy_cpu_seconds() -> float:
    """Machine-wide busy CPU seconds (all cores) since boot."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)


def own_children_cpu_seconds() -> float:
    """CPU of the processes this runner started and reaped (wrk, the login driver)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float, threshold: float = 0.15, window: float = 1.0) -> float:
    """Wait (up to ``max_wait`` s) until the machine's busy CPU over ``window`` seconds is below
    ``threshold`` of its capacity; returns the last measured share. Other work on the machine
    (test suites, builds) distorts every number, so the runner waits for a quiet moment."""
    cores = psutil.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(window)
        share = (busy_cpu_seconds() - before) / (window * cores)
        if share < threshold or time.monotonic() >= deadline:
            return share


async def _pg_execute(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pg_admin_url() -> str:
    url = os.environ.get("AUTHPI_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    return url.replace("postgresql+asyncpg://", "postgresql://")


def pg_available() -> bool:
    try:
        asyncio.run(_pg_execute(pg_admin_url(), "SELECT 1"))
        return True
    except Exception:
        return False


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database for one run, dropped afterwards (even on failure)."""
    admin = pg_admin_url()
    name = "authpi_bench_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class AuthPI(Server):
    account_id: str = ""
    key_id: str = ""
    key_secret: str = ""
    backend: str = "sqlite"
    data_dir: Path = Path()
    database_url: str | None = None


@contextmanager
def authpi_server(backend: str, workers: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[AuthPI]:
    """``authpi serve --workers N`` on SQLite (a temporary data dir) or a fresh PostgreSQL database."""
    tmp = Path(tempfile.mkdtemp(prefix=f"authpi-bench-{backend}-"))
    try:
        with pg_database() if backend == "postgres" else _nothing() as db_url:
            port = free_port()
            env = {
                **os.environ,
                "AUTHPI_DATA_DIR": str(tmp / "data"),
                "AUTHPI_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "AUTHPI_RATE_LIMITS_ENABLED": "false",
                "AUTHPI_LOG_LEVEL": "warning",
            }
            env.pop("AUTHPI_DATABASE_URL", None)
            if db_url:
                env["AUTHPI_DATABASE_URL"] = db_url
            env.update(extra_env or {})
            boot = subprocess.run(
                [sys.executable, "-m", "authpi", "bootstrap"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if boot.returncode != 0:
                raise RuntimeError("authpi bootstrap failed:\n" + boot.stderr)
            creds = json.loads(boot.stdout)
            log = tmp / "server.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "authpi",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_http(f"{url}/healthz", proc, log)
                # uvicorn answers once one worker is up: wait until every worker has started.
                deadline = time.monotonic() + 30
                server = AuthPI(
                    name=f"authpi-{backend}",
                    url=url,
                    proc=proc,
                    log=log,
                    account_id=creds["account_id"],
                    key_id=creds["key_id"],
                    key_secret=creds["key_secret"],
                    backend=backend,
                    data_dir=tmp / "data",
                    database_url=db_url,
                )
                while len(server.workers()) < workers and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1.0)
                yield server
            finally:
                _stop(proc)
                tracebacks = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line]
                if tracebacks:
                    sys.stderr.write(f"[bench] {len(tracebacks)} traceback(s) in the {backend} server log:\n")
                    sys.stderr.write(log.read_text(errors="replace")[-6000:] + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@contextmanager
def peer_server(
    clients: list[dict[str, str]],
    workers: int = 2,
    *,
    web_client: dict[str, str] | None = None,
    bench_secret: str = "",
) -> Iterator[Server]:
    """panva's oidc-provider (bench/peer/server.js) with ``workers`` cluster workers; ``web_client``
    ({client_id, client_secret, redirect_uri}) adds the authorization-code client, ``bench_secret``
    opens its POST /bench/mint (refresh-token pools)."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="authpi-bench-peer-"))
    log = tmp / "peer.log"
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "PEER_PORT": str(port),
        "PEER_WORKERS": str(workers),
        "PEER_CLIENTS": json.dumps(clients),
        "PEER_WEB_CLIENT": json.dumps(web_client) if web_client else "",
        "PEER_BENCH_SECRET": bench_secret,
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["node", str(PEER_DIR / "server.js")], cwd=PEER_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/.well-known/openid-configuration", proc, log)
        server = Server(name="oidc-provider", url=url, proc=proc, log=log)
        deadline = time.monotonic() + 30
        while len(server.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
