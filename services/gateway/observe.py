"""What the gateway tells its operators about each request: its request id, and its metrics.

Outermost but for the path rewriting (ExpressPaths), so every answer from FastAPI or the game's
files carries `X-Request-Id` and is counted; the fast path, in front of both, does the same for the
requests it answers itself, without the layer (services/gateway/hotpath.py). The id is the caller's own if it is sane
(shared/logs.py), else a new one, and is set for the task answering the request, so every log line
about the request, and the envelope of the command it sends, carry it. The request is counted under
the template of the route that answered it, which the router or the fast path leaves in the scope;
and under CLIENT_GONE (499) if its client went away before it was answered.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.bodies import header
from services.gateway.metrics import HttpMetrics, route_of
from shared.logs import current_request_id, request_id_from

# The request id the fast path gave a request it then left to FastAPI after all: kept, not made again.
REQUEST_ID = "cachequest.request_id"
# The status a request is counted under when its client left before it was answered (nginx's): not
# a 500, which would be the gateway's fault and could fire an error-rate alert.
CLIENT_GONE = 499


class Observe:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None) -> None:
        """`metrics` None: requests get their ids but are not counted (HTTP_METRICS=false)."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = scope.get(REQUEST_ID) or request_id_from(header(scope, b"x-request-id"))
        current_request_id.set(request_id)
        id_header = (b"x-request-id", request_id.encode())
        status = 500  # if the app fails before it answers, uvicorn answers 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                answered = True
                if status != CLIENT_GONE:
                    status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        async def receive_noting_departure() -> Message:
            nonlocal status
            message = await receive()
            if message["type"] == "http.disconnect" and not answered:
                status = CLIENT_GONE  # whatever the app makes of it: an answer nobody receives
            return message

        try:
            await self.app(scope, receive_noting_departure, send_with_id)
        finally:
            if self.metrics is not None:
                self.metrics.record(route_of(scope), scope["method"], status, time.perf_counter() - started)
