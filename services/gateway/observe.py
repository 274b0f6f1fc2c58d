"""What the gateway tells its operators about each request: its request id.

Outermost but for the path rewriting (ExpressPaths), so every answer, from the fast path, FastAPI or
the game's files, carries `X-Request-Id`: the caller's own if it is sane (shared/logs.py), else a
new one. The id is set for the task answering the request, so every log line about the request, and
the envelope of the command it sends, carry it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import current_request_id, request_id_from


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's first value, straight from the raw headers."""
    for key, value in scope["headers"]:
        if key == name:
            found: bytes = value
            return found
    return None


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(header(scope, b"x-request-id"))
        current_request_id.set(request_id)
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        await self.app(scope, receive, send_with_id)
