"""Rate limits in Redis, per session and per client address, with the `limits` library.

A sliding-window counter is one Lua call per check and smooths the burst a
fixed window allows at its edges; its keys live under `ratelimit:`.
"""

from __future__ import annotations

import asyncio
import math
import time

from fastapi import HTTPException, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from services.gateway.sessions import SessionId, client_address
from shared import keys
from shared.settings import Settings


def rate(text: str) -> RateLimitItem | None:
    return parse(text) if text else None


class RateLimits:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        storage = RedisStorage(
            f"async+{settings.redis_url}",
            implementation="redispy",
            key_prefix=keys.RATE_LIMIT_PREFIX,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # documented, typed narrowly
        )
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.rules = {
            "session-writes": rate(settings.rate_limit_session_writes),
            "address-writes": rate(settings.rate_limit_address_writes),
            "address-sessions": rate(settings.rate_limit_address_sessions),
        }

    async def retry_after(self, rule: str, who: str) -> int | None:
        """Count one hit; None if allowed, else the seconds until it would be."""
        item = self.rules[rule]
        if item is None or await self.limiter.hit(item, rule, who):
            return None
        stats = await self.limiter.get_window_stats(item, rule, who)
        return max(1, math.ceil(stats.reset_time - time.time()))


async def check_writes(limits: RateLimits, caller: str, address: str) -> None:
    """Count a write against the session's and the address's limits; 429 if either is spent."""
    waits = await asyncio.gather(
        limits.retry_after("session-writes", caller),
        limits.retry_after("address-writes", address),
    )
    wait = max((w for w in waits if w), default=None)
    if wait:
        raise HTTPException(429, "Too many writes; slow down", headers={"Retry-After": str(wait)})


async def limit_writes(request: Request, caller: SessionId) -> None:
    """A dependency of every write route."""
    await check_writes(request.app.state.limits, caller, client_address(request.scope))
