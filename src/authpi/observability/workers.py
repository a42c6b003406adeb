"""Process-level set-up that ``authpi serve`` does before uvicorn starts its workers."""

from __future__ import annotations

import atexit
import logging.config
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from authpi.observability import logs
from authpi.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "authpi-metrics-"


def configure(settings: Settings) -> dict[str, Any]:
    """Configure this process's logging and share metrics between workers; returns the logging
    configuration for uvicorn to apply in each worker."""
    log_config = logs.config(settings.log_format, settings.log_level)
    logging.config.dictConfig(log_config)
    if settings.metrics_enabled:
        share_metrics()
    return log_config


def share_metrics() -> Path:
    """Point prometheus-client's multiprocess mode at an empty private directory.

    It must be set before any worker imports the client (workers inherit the environment). An
    operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used, emptied of the previous run's files;
    otherwise a fresh temporary directory (0700), named after this process, is made and removed when
    the server exits. A server killed without running its exit handlers (kill -9) leaves its
    directory behind, so each start also removes the directories of servers no longer running."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory
    remove_abandoned(Path(tempfile.gettempdir()))
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def remove_abandoned(parent: Path) -> None:
    """Remove this user's metrics directories whose server process has gone."""
    for candidate in parent.glob(PREFIX + "*"):
        pid = candidate.name.removeprefix(PREFIX).split("-", 1)[0]
        try:
            owned = candidate.is_dir() and candidate.stat().st_uid == os.getuid()
        except OSError:
            continue
        if owned and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
