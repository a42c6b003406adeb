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
    otherwise a fresh temporary directory (0700) is made and removed when the server exits."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory
    directory = Path(tempfile.mkdtemp(prefix="authpi-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory
