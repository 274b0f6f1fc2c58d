"""Request bodies: over the limit they are refused before anything parses them; they must say they are
JSON, and parsing is strict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from services.gateway.responses import error_response

if TYPE_CHECKING:  # the layer's argument; routing.py imports this module
    from services.gateway.routing import Call


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


class BodyLimit:
    """The layer that reads a request's body, up to `max_bytes`, before anything parses it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def enter(self, call: Call) -> Response | None:
        if call.scope["method"] in NO_BODY_METHODS:
            return None
        body = await bounded_body(call.scope, call.receive, self.max_bytes)
        if body is None:
            raise ClientGone
        if isinstance(body, Response):
            return body
        call.raw = body
        call.receive = replaying(body, call.receive)  # for FastAPI, if no route record takes it
        return None


# A body must say it is JSON: one without a Content-Type is not taken as JSON, since a cross-site
# `fetch` of an ArrayBuffer sends none and needs no CORS preflight.
JSON = b"application/json"
MERGE_PATCH = b"application/merge-patch+json"  # RFC 7396
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def media_type(scope: Scope) -> bytes | None:
    """The request's Content-Type without its parameters, in lower case."""
    declared = header(scope, b"content-type")
    return None if declared is None else declared.partition(b";")[0].strip().lower()


def declares_merge_patch(scope: Scope) -> bool:
    return media_type(scope) == MERGE_PATCH
