"""Sending a command to a worker and waiting for its answer: the gateway's side of the protocol."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from services.gateway.ratelimit import RateLimits, SessionGone
from shared.pipelined import PipelinedRedis
from shared.protocol import ROUTE_OF, Event, EventType, Reply, trim_id, wait_for_reply
from shared.settings import Settings

# A reply written right at the deadline should still reach the caller.
REPLY_GRACE_MS = 250
SESSION_GONE = "Your session has expired: call GET /session for a new one"


class CommandBus:
    def __init__(self, redis: PipelinedRedis, limits: RateLimits, settings: Settings) -> None:
        self.redis = redis
        self.limits = limits
        self.settings = settings

    async def call(self, type: EventType, session_id: str, address: str, payload: Any) -> Reply:
        """Admit the command under the caller's write limits, publish it, and wait for its reply.

        Admission and publication are one script (services/gateway/ratelimit.lua): a refused
        command is never published, nor one whose session is gone from Redis (401). A 504 means no
        worker answered in time; the command is never applied after its deadline, and every command
        is idempotent, so the client can simply retry.
        """
        event = Event.new(type, session_id, payload, self.settings.request_timeout_ms)
        route = ROUTE_OF[type]
        try:
            wait = await self.limits.admit(
                [("session-writes", session_id), ("address-writes", address)],
                publish=(session_id, route.stream, trim_id(self.settings.stream_retention_ms), event.encode()),
            )
        except SessionGone:
            raise HTTPException(401, SESSION_GONE) from None
        if wait:
            raise HTTPException(429, "Too many writes; slow down", headers={"Retry-After": str(wait)})
        reply = await wait_for_reply(self.redis, event, self.settings.request_timeout_ms + REPLY_GRACE_MS)
        if reply is None:
            raise HTTPException(
                504,
                f"The {route.group} service did not answer in time; it will not apply it late: retrying is safe",
                headers={"Retry-After": "1"},
            )
        if reply.status == 503:  # Redis was full: the worker applied nothing (shared/worker.py)
            raise HTTPException(503, str(reply.body["message"]), headers={"Retry-After": "1"})
        return reply
