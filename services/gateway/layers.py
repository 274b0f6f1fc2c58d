"""The gateway as ASGI sees it: every request passes the layers in their one order, then a route.

A layer is a step, not a wrapper: its `enter`, if it has one, runs before the route and may answer in
its place (a 413, a 429); its `leave` adds its headers to the answer (the request id, the session
cookie). One driver (`Gateway`) runs them all in one frame, so the order is written once (app.py's
`layers`) and a request pays no coroutine per layer around its `send`, which is what a stack of
ASGI middleware costs on every request (docs/protocol.md, "One path through the gateway"). What no
route record matches goes on to FastAPI (the docs and the game's files) after the same steps, its
answer's headers left to the same `leave`s.

The layers are here but the session's (services/gateway/sessions.py, with the cookies it reads):

- `ExpressPaths`: paths as the seed's Express server matched them, so its client works unchanged.
  It wrote to `/api/playerstate/` and read `/api/playerstate/{id}`: a trailing slash is optional
  and `HEAD` answers like `GET`, both by rewriting the scope rather than redirecting (a 307 would
  double the cost of every save, and many HTTP clients do not send a body again after one).
- `RequestIds`: each request's id, the caller's own if it is sane (shared/logs.py), else a new one;
  set for the task answering the request, so every log line about it and the envelope of the command
  it sends carry it, and sent back as `X-Request-Id`.
- `BodyLimit`: the body read up to MAX_BODY_BYTES before anything parses it (413 past it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.gateway.responses import error_response, response_for
from shared.logs import current_request_id, request_id_from

if TYPE_CHECKING:  # both import this module
    from services.gateway.metrics import HttpMetrics
    from services.gateway.routing import Router

# Paths under these answer JSON, like the routes outside them below: the API's and the session's.
API_PREFIXES = ("/api/", "/session/")
ADMIN_PREFIX = "/admin"
# Routes outside /api/ that answer JSON; every other path is the game's static files.
OTHER_ROUTES = frozenset({"/session", "/livez", "/healthz", "/metrics"})
# Set in the scope of a HEAD answered as GET, for a response that never ends (an event stream) to end at once.
HEAD_AS_GET = "cachequest.head"
# The status a request is counted under when its client left before it was answered (nginx's): not
# a 500, which would be the gateway's fault and could fire an error-rate alert.
CLIENT_GONE = 499
UNMATCHED = "unmatched"  # what a request no route answered is counted under
# A body must say it is JSON: one without a Content-Type is not taken as JSON, since a cross-site
# `fetch` of an ArrayBuffer sends none and needs no CORS preflight.
JSON = b"application/json"
MERGE_PATCH = b"application/merge-patch+json"  # RFC 7396


def media_type(scope: Scope) -> bytes | None:
    """The request's Content-Type without its parameters, in lower case."""
    declared = header(scope, b"content-type")
    return None if declared is None else declared.partition(b";")[0].strip().lower()


def declares_merge_patch(scope: Scope) -> bool:
    return media_type(scope) == MERGE_PATCH


NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Call:
    """One request on its way through the layers (services/gateway/layers.py) to its route."""

    scope: Scope
    receive: Receive
    state: State  # what the app's lifespan opened: store, bus, settings, ...
    started: float
    request_id: str = ""
    caller: str | None = None  # the confirmed session id, which the session layer found
    raw: bytes = b""  # the body as sent, which the body layer read
    params: dict[str, Any] = field(default_factory=dict)  # the path's parameters
    body: Any = None  # the route's body model, validated
    query: Any = None  # the route's query model, validated
    cookie: str = ""  # the session's Set-Cookie for the answer (a route may choose another session's)
    operator: str = ""  # on an operators' route, whose token it carries (admin.py's guard)
    moving: bool = False  # the answer also expires the cookie's old name

    @property
    def session(self) -> str:
        """The caller, on a route that declares `session=True` (the router has refused a call without one)."""
        assert self.caller is not None
        return self.caller


@runtime_checkable
class Enters(Protocol):
    """A layer with a step before the route."""

    async def enter(self, call: Call) -> Response | None:
        """None to go on, or the answer."""


@runtime_checkable
class Leaves(Protocol):
    """A layer with a step on the answer."""

    def leave(self, call: Call, headers: list[tuple[bytes, bytes]]) -> None:
        """Add to the answer's raw headers, before it is sent."""


class Gateway:
    """The layers, then the route records, then FastAPI; every request counted once it is answered."""

    def __init__(
        self, layers: Sequence[Enters | Leaves], router: Router, app: FastAPI, metrics: HttpMetrics | None
    ) -> None:
        self.router = router
        self.app = app
        self.metrics = metrics
        self.entering = [layer.enter for layer in layers if isinstance(layer, Enters)]
        self.leaving = [layer.leave for layer in reversed(layers) if isinstance(layer, Leaves)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.app(scope, receive, send)
            return
        call = Call(scope, receive, self.app.state, time.perf_counter())
        try:
            response = await self.route(call)
        except ClientGone:
            self.count(call, CLIENT_GONE)
            return
        if response is None:
            await self.pass_on(call, send)
            return
        headers = response.raw_headers
        for leave in self.leaving:
            leave(call, headers)
        try:
            await response(call.scope, call.receive, send)
        finally:
            self.count(call, response.status_code)

    async def route(self, call: Call) -> Response | None:
        """The answer of a layer or of the route; None for what no route matches."""
        try:
            for enter in self.entering:
                response = await enter(call)
                if response is not None:
                    return response
            found = self.router.find(call.scope["method"], call.scope["path"])
            if found is None:
                return None
            route, call.params = found
            call.scope["route"] = route  # as Starlette's router does: the metrics' label
            return await route.serve(call)
        except ClientGone:
            raise
        except Exception as error:
            return response_for(error)

    async def pass_on(self, call: Call, send: Send) -> None:
        """To FastAPI, with the layers' headers added to whatever it answers."""
        status = 500  # if FastAPI fails before it answers, uvicorn answers 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                for leave in self.leaving:
                    leave(call, headers)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(call.scope, call.receive, send_with_headers)
        finally:
            self.count(call, status)

    def count(self, call: Call, status: int) -> None:
        if self.metrics is not None:
            self.metrics.record(route_of(call.scope), call.scope["method"], status, time.perf_counter() - call.started)


class ExpressPaths:
    """The layer that makes a trailing slash optional, and answers `HEAD` as `GET` without the body,
    on every API route."""

    async def enter(self, call: Call) -> None:
        scope = call.scope
        scope["path"] = path = without_slash(scope["path"])
        if scope["method"] == "HEAD" and is_api(path):
            # A copy: uvicorn keeps its own scope's HEAD and so sends the headers without the body.
            call.scope = {**scope, "method": "GET", HEAD_AS_GET: True}


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in OTHER_ROUTES or path == "/api" or is_admin(path)


def is_admin(path: str) -> bool:
    """The operators' console and its API (admin.py): JSON, never the game's files, served or not."""
    return path.startswith(ADMIN_PREFIX) and (len(path) == len(ADMIN_PREFIX) or path[len(ADMIN_PREFIX)] == "/")


def without_slash(path: str) -> str:
    """An API path as Express matches it: its trailing slash is optional."""
    return path[:-1] if path.endswith("/") and len(path) > 1 and is_api(path[:-1]) else path


class RequestIds:
    """The layer that names each request."""

    async def enter(self, call: Call) -> None:
        call.request_id = request_id_from(header(call.scope, b"x-request-id"))
        current_request_id.set(call.request_id)

    def leave(self, call: Call, headers: list[tuple[bytes, bytes]]) -> None:
        headers.append((b"x-request-id", call.request_id.encode()))


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


def route_of(scope: Scope) -> str:
    """The template of the route that answered (`/api/playerstate/{id}`), which the router left in the
    scope; static files are their mount's `/{path}`."""
    template: str | None = getattr(scope.get("route"), "path_format", None)
    return template or UNMATCHED
