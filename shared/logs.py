"""Every service's log lines: readable text by default, one JSON object a line with LOG_FORMAT=json.

A command's request id follows it from the gateway's HTTP answer (`X-Request-Id`) through its
envelope to the worker that applies it, so one id finds every line about one request. The gateway
sets it for the task answering a request (`current_request_id`); a worker passes it with each line
about a command (`extra={"request_id": ...}`). The formatters add it to any line that has one.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.settings import Settings

# What a caller's X-Request-Id may be; anything else is replaced by one of ours (it goes into logs
# and stream entries as it is, so it must not be able to forge a line or grow them).
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Each request is answered in an asyncio task of its own, so what one request sets here no other sees.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIds:
    """Ids unique across processes and hosts without a system call per request: 64 random bits drawn
    once per process (again in a forked child), then a count, 24 hex digits in all."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.count) & 0xFFFFFFFF:08x}"


new_request_id = RequestIds().new


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-Id if it is sane, else a new one: a bad id is replaced, never an error."""
    if header is not None and SANE_REQUEST_ID.fullmatch(header):
        return header.decode()
    return new_request_id()


def request_id_of(record: logging.LogRecord) -> str | None:
    given: str | None = getattr(record, "request_id", None)
    return given or current_request_id.get()


class TextFormatter(logging.Formatter):
    """The readable line, with the request id at its end when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = request_id_of(record)
        return line if request_id is None else f"{line} [request {request_id}]"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for a log pipeline: time (UTC), level, logger, message, request id, error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_of(record)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for a service, and for uvicorn, which applies it in each gateway
    process it starts: so uvicorn's own lines come in the same format as everyone's."""
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["stderr"]},
        # uvicorn's loggers, without the handlers and formats of its own default configuration.
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }
