"""Sending a command to a worker and waiting for its answer: the gateway's side of the protocol."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from redis.asyncio import Redis

from shared.protocol import ROUTE_OF, Event, EventType, Reply, send
from shared.settings import Settings

# A reply written right at the deadline should still reach the caller.
REPLY_GRACE_MS = 250


class CommandBus:
    def __init__(self, waiter: Redis, settings: Settings) -> None:
        self.waiter = waiter  # its connections may block for a whole REQUEST_TIMEOUT_MS
        self.settings = settings

    async def call(self, type: EventType, session_id: str, payload: Any) -> Reply:
        """Publish the command and wait for its reply.

        A 504 means no worker answered in time. The command is never applied after its deadline,
        and every command is idempotent, so the client can simply retry.
        """
        event = Event.new(type, session_id, payload, self.settings.request_timeout_ms)
        wait_ms = self.settings.request_timeout_ms + REPLY_GRACE_MS
        reply = await send(self.waiter, event, self.settings.stream_retention_ms, wait_ms)
        if reply is None:
            service = ROUTE_OF[type].group
            raise HTTPException(
                504,
                f"The {service} service did not answer in time; it will not apply it late: retrying is safe",
                headers={"Retry-After": "1"},
            )
        return reply
