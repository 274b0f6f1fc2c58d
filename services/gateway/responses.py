"""JSON answers. Every error leaves as `{"status", "message"}` with the matching code: no HTML, no trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from shared.connection import REDIS_DOWN, unavailable

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = "Storage is unavailable; try again shortly"


class JSONBytes(Response):
    """A JSON body already serialised, its headers built as raw pairs: what Starlette's init_headers
    builds, in the same order, less its work through a mapping (a few percent of a fast read's
    instructions, docs/benchmarks.md). For answers with a body: not 204 or 304."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [*headers, (b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]


def json_response(status: int, body: Any) -> Response:
    return JSONBytes(orjson.dumps(body), status)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = orjson.dumps({"status": status, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def describe(error: RequestValidationError) -> str:
    """The first problem, phrased for a client developer: where it is and what is wrong."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    if first["type"] == "json_invalid":
        return "Malformed JSON body"
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def response_for(error: Exception) -> Response:
    """The JSON answer to an error raised while serving a request, on the hot path or through FastAPI."""
    if isinstance(error, HTTPException):
        return error_response(error.status_code, str(error.detail), error.headers)
    reason = unavailable(error)
    if reason is not None:  # unreachable, busy or full: nothing a retry in a moment won't fix
        log.warning("Redis %s: %s", reason, error)
        return error_response(503, STORAGE_UNAVAILABLE, {"Retry-After": "1"})
    log.exception("unhandled error", exc_info=error)
    return error_response(500, "Internal error")


async def on_error(_request: Request, error: Exception) -> Response:
    return response_for(error)


async def on_validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return error_response(400, describe(error))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    # Redis's own errors by name: Starlette logs a traceback for whatever only the `Exception` handler catches.
    for error in (HTTPException, *REDIS_DOWN, RedisError, Exception):
        app.add_exception_handler(error, on_error)
