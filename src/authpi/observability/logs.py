"""One logging configuration for the server process and every worker: uvicorn's loggers and the
application's (``authpi``, ``authpi.oidc``, ``authpi.access``…) write through the same handler, as
human-readable lines (``AUTHPI_LOG_FORMAT=text``) or one JSON object per line (``json``).

Every line carries a UTC timestamp, the level, the logger, the message and the ID of the request it
was written for (``request_id``, null outside requests); error lines carry the ``reference`` the
client received and the exception. Fields passed with ``extra=`` (the access log's method, path,
status…) become JSON keys.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from authpi.observability import request_id

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
}
FORMATS = ("text", "json")


def timestamp(record: logging.LogRecord) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-11-29T14:20:42.123Z``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's ID (set by ``observability.asgi``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.current.get()
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-29T14:20:42.123Z INFO authpi.access [3f9c…] GET /v1/me 200 2.1ms 127.0.0.1``"""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{timestamp(record)} {record.levelname} {record.name} "
            f"[{getattr(record, 'request_id', None) or '-'}] {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary, also given to uvicorn (``log_config``) so that
    each worker applies it when it starts."""
    level = level.upper()
    formatter = _FORMATTERS[log_format]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{RequestIdFilter.__module__}.{RequestIdFilter.__qualname__}"}},
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        # Libraries (SQLAlchemy, asyncio…) say only what matters; the server's own loggers say more.
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "authpi": {"level": level},
            # SQLAlchemy's pool logs under its class's module, which for our pool subclass falls
            # under "authpi": keep that library chatter (pool disposed/recreated) at library level.
            "authpi.storage.db.GuardedPool": {"level": "WARNING"},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            # The access log is written by ``authpi.access`` (with duration and request ID).
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
