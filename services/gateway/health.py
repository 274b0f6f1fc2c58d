"""`GET /livez` and `GET /healthz`: alive, and ready.

Kubernetes restarts a pod whose liveness probe fails and stops routing to one whose readiness probe
fails. A Redis outage must do the second only: restarting every gateway would not bring Redis back,
so `/livez` asks nothing of Redis, and `/healthz` is ready only when Redis, both modules and a live
consumer in each group are there.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.responses import Response

from services.gateway.layers import Call
from services.gateway.responses import json_response
from services.gateway.routing import Route
from services.gateway.store import Store
from shared.connection import missing_modules, unavailable
from shared.protocol import COMMAND_STREAMS
from shared.settings import Settings

log = logging.getLogger(__name__)

# What a caller of /healthz may know; the error itself, which names Redis's address, goes to the log.
REDIS_PROBLEMS = {
    "unreachable": "Redis does not answer",
    "busy": "Redis is busy running a script (past busy-reply-threshold) and refuses every command",
    "out of memory": "Redis is out of memory (maxmemory) and refuses writes",
    "cluster down": "the Redis Cluster does not serve every slot (a master is lost and not yet replaced)",
    "error": "Redis answers with an error (the gateway's log has it)",
}


async def livez(_call: Call) -> Response:
    """200 while this process serves requests, whatever Redis does: the liveness probe."""
    return json_response(200, {"status": 200})


async def healthz(call: Call) -> Response:
    """200 when every part answers; otherwise 503 and what is missing: the readiness probe."""
    store: Store = call.state.store
    settings: Settings = call.state.settings
    checks: dict[str, Any] = {}
    problems: list[str] = []
    try:
        await store.probe_writes()
        checks["redis"] = "ok"
        missing = missing_modules(await store.modules())
        checks["modules"] = "ok" if not missing else f"missing {', '.join(missing)}"
        problems += [f"Redis lacks the {name} module" for name in missing]
        # A consumer blocked in XREADGROUP looks idle for up to block_ms; allow a few rounds.
        within = settings.block_ms * 3 + 2000
        partitions = range(settings.stream_partitions)
        for stream in COMMAND_STREAMS:  # every worker consumes every partition: the fewest is what counts
            live = min([await store.live_consumers(stream.key(n), stream.group, within) for n in partitions])
            checks[f"{stream.group}_consumers"] = live
            if not live:
                problems.append(
                    f"no live consumer in group {stream.group!r} (start `python -m services.{stream.group}`)"
                )
    except RedisError as error:
        reason = unavailable(error) or "error"
        log.warning("health check: Redis %s: %s", reason, error)
        checks["redis"] = reason
        problems.append(REDIS_PROBLEMS[reason])
    status = 503 if problems else 200
    return json_response(status, {"status": status, "checks": checks, "problems": problems})


ROUTES = [
    Route("GET", "/livez", livez, "livez", tags=("health",), responses={}),
    Route("GET", "/healthz", healthz, "healthz", tags=("health",), responses={}),
]
