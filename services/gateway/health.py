"""`GET /healthz`: ready only when Redis, both modules and a live consumer in each group are there."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import Response

from services.gateway.responses import json_response
from shared.connection import missing_modules, unavailable
from shared.protocol import ROUTES
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

# A script that may write but writes nothing: Redis refuses it exactly when it refuses writes for want
# of memory (maxmemory), which PING does not show; a busy or unreachable Redis fails it as it would PING.
WRITE_PROBE = "#!lua\nreturn 1"
# What a caller of /healthz may know; the error itself, which names Redis's address, goes to the log.
REDIS_PROBLEMS = {
    "unreachable": "Redis does not answer",
    "busy": "Redis is busy running a script (past busy-reply-threshold) and refuses every command",
    "out of memory": "Redis is out of memory (maxmemory) and refuses writes",
    "error": "Redis answers with an error (the gateway's log has it)",
}


async def live_consumers(redis: Redis, stream: str, group: str, within_ms: int) -> int:
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except RedisError:  # no stream or no group yet: no worker has started
        return 0
    return sum(1 for consumer in consumers if consumer["idle"] <= within_ms)


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    """200 when every part answers; otherwise 503 and what is missing."""
    redis: Redis = request.app.state.redis
    settings: Settings = request.app.state.settings
    checks: dict[str, Any] = {}
    problems: list[str] = []
    try:
        await redis.eval(WRITE_PROBE, 0)
        checks["redis"] = "ok"
        missing = await missing_modules(redis)
        checks["modules"] = "ok" if not missing else f"missing {', '.join(missing)}"
        problems += [f"Redis lacks the {name} module" for name in missing]
        # A consumer blocked in XREADGROUP looks idle for up to block_ms; allow a few rounds.
        within = settings.block_ms * 3 + 2000
        for route in ROUTES:
            live = await live_consumers(redis, route.stream, route.group, within)
            checks[f"{route.group}_consumers"] = live
            if not live:
                problems.append(f"no live consumer in group {route.group!r} (start `python -m services.{route.group}`)")
    except RedisError as error:
        reason = unavailable(error) or "error"
        log.warning("health check: Redis %s: %s", reason, error)
        checks["redis"] = reason
        problems.append(REDIS_PROBLEMS[reason])
    status = 503 if problems else 200
    return json_response(status, {"status": status, "checks": checks, "problems": problems})
