"""The gateway as ASGI sees it: every request passes the layers in their one order, then a route.

A layer is a step, not a wrapper: its `enter`, if it has one, runs before the route and may answer in its place (a 413,
a 429); its `leave` adds its headers to the answer (the request id, the session cookie). One driver runs
them all in one frame, so the order is written once (app.py's `layers`) and a request pays no
coroutine per layer around its `send`, which is what a stack of ASGI middleware costs on every
request (docs/protocol.md, "One definition per route"). What no route record matches goes on to
FastAPI (the docs and the game's files) after the same steps, its answer's headers left to the same
`leave`s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.gateway.bodies import ClientGone
from services.gateway.metrics import HttpMetrics, route_of
from services.gateway.responses import response_for
from services.gateway.routing import Call, Router

# The status a request is counted under when its client left before it was answered (nginx's): not
# a 500, which would be the gateway's fault and could fire an error-rate alert.
CLIENT_GONE = 499


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
