"""Each request's id: the caller's own if it is sane (shared/logs.py), else a new one.

It is set for the task answering the request, so every log line about the request, and the envelope
of the command it sends, carry it; and it goes back on the answer as `X-Request-Id`. The requests
themselves are counted by the driver (services/gateway/layers.py), under the template of the route
that answered.
"""

from __future__ import annotations

from services.gateway.bodies import header
from services.gateway.routing import Call
from shared.logs import current_request_id, request_id_from


class RequestIds:
    """The layer that names each request."""

    async def enter(self, call: Call) -> None:
        call.request_id = request_id_from(header(call.scope, b"x-request-id"))
        current_request_id.set(call.request_id)

    def leave(self, call: Call, headers: list[tuple[bytes, bytes]]) -> None:
        headers.append((b"x-request-id", call.request_id.encode()))
