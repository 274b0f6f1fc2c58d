"""Request bodies: over the limit they are refused before anything parses them; they must say they are
JSON, and parsing is strict."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.responses import error_response


class ClientGone(Exception):
    """The client disconnected before sending its whole body: there is no one to answer."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's first value, straight from the raw headers (`name` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            found: bytes = value
            return found
    return None


def declared_too_large(scope: Scope, max_bytes: int) -> bool:
    length = header(scope, b"content-length")
    return length is not None and length.isdigit() and int(length) > max_bytes


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > max_bytes:
            return None
        if not message.get("more_body", False):
            return b"".join(chunks)


async def bounded_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes | Response | None:
    """The request's body; or the 413 that refuses it (before any parsing, with or without
    Content-Length); or None if its client left."""
    try:
        body = None if declared_too_large(scope, max_bytes) else await read_body(receive, max_bytes)
    except ClientGone:
        return None
    return error_response(413, f"Request body is over the {max_bytes}-byte limit") if body is None else body


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands an app a body already read, then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class BodyLimitMiddleware:
    """Buffers up to `max_bytes` of body, then hands the app a body that is known to be small."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body = await bounded_body(scope, receive, self.max_bytes)
        if isinstance(body, Response):
            await body(scope, receive, send)
        elif body is not None:
            await self.app(scope, replaying(body, receive), send)


JSON_MEDIA_TYPES = frozenset({b"application/json"})
MERGE_PATCH = b"application/merge-patch+json"  # RFC 7396
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def media_type(scope: Scope) -> bytes | None:
    """The request's Content-Type without its parameters, in lower case."""
    declared = header(scope, b"content-type")
    return None if declared is None else declared.partition(b";")[0].strip().lower()


def declares_json(scope: Scope) -> bool:
    """Whether the request says its body is JSON. A body without a Content-Type is not taken as JSON:
    a cross-site `fetch` of an ArrayBuffer sends none, and needs no CORS preflight."""
    return media_type(scope) in JSON_MEDIA_TYPES


def declares_merge_patch(scope: Scope) -> bool:
    return media_type(scope) == MERGE_PATCH


def takes_merge_patch(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint that also takes `application/merge-patch+json` bodies (the saves' PATCH)."""
    endpoint.merge_patch = True  # type: ignore[attr-defined]
    return endpoint


class StrictJSONRequest(Request):
    """Parses bodies with orjson: strict JSON (no NaN or Infinity to be stored as null) and fast."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # orjson.JSONDecodeError is a json.JSONDecodeError
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        merge_patch = getattr(self.endpoint, "merge_patch", False)
        wanted = "application/json or application/merge-patch+json" if merge_patch else "application/json"

        async def strict_handler(request: Request) -> Response:
            scope = request.scope
            if (
                request.method in BODY_METHODS
                and not declares_json(scope)
                and not (merge_patch and declares_merge_patch(scope))
            ):
                return error_response(415, f"Send the body as JSON, with Content-Type: {wanted}")
            return await handler(StrictJSONRequest(scope, request.receive))

        return strict_handler
