"""Every error leaves as JSON `{"status", "message"}` with the matching code: no HTML, no trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from shared.connection import REDIS_DOWN

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = "Storage is unavailable; try again shortly"


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


async def on_http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), error.headers)


async def on_validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return error_response(400, describe(error))


async def on_redis_down(_request: Request, error: Exception) -> Response:
    log.warning("Redis unavailable: %s", error)
    return error_response(503, STORAGE_UNAVAILABLE, {"Retry-After": "1"})


async def on_unexpected(_request: Request, error: Exception) -> Response:
    log.exception("unhandled error", exc_info=error)
    return error_response(500, "Internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for error in REDIS_DOWN:
        app.add_exception_handler(error, on_redis_down)
    app.add_exception_handler(Exception, on_unexpected)
