"""Announcing each board's top to the gateways' live listeners (GET /api/leaderboard/{key}/live).

After a batch settles, each board its commands reached is compared, in one script in the board's
slot, with the last top announced on its live stream, and appended there only if it changed: so a
score outside the top costs one small script and no event, and several workers agree without
talking. A worker that dies between settle and announce, or meets a Redis that is away, misses an
announcement; the next change of that board announces the whole top again, and every worker's sweep
(every CLAIM_IDLE_MS / 2) re-checks every board, so no listener waits longer than that for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from shared import keys
from shared.connection import REDIS_DOWN
from shared.protocol import LIVE_STREAM_MAXLEN, LIVE_TOP_SIZE
from shared.settings import Settings

log = logging.getLogger(__name__)

ANNOUNCE_TOP = (Path(__file__).parent / "announce_top.lua").read_text()


class TopAnnouncer:
    """The leaderboard worker's step after each settle (shared.worker.AfterSettle)."""

    def __init__(self, redis: Redis | RedisCluster, settings: Settings) -> None:
        self.boards = frozenset(keys.leaderboard(name) for name in settings.leaderboard_maps)
        self.script = redis.register_script(ANNOUNCE_TOP)

    async def settled(self, targets: Collection[str]) -> None:
        await self.announce(self.boards.intersection(targets))

    async def sweep(self) -> None:
        await self.announce(self.boards)

    async def announce(self, boards: Collection[str]) -> None:
        """Each board's top on its live stream if it changed; a failure waits for the next change or sweep."""
        outcomes = await asyncio.gather(
            *(
                self.script(keys=[board, keys.live_top(board)], args=[LIVE_TOP_SIZE, LIVE_STREAM_MAXLEN])
                for board in boards
            ),
            return_exceptions=True,
        )
        for board, outcome in zip(boards, outcomes, strict=True):
            if isinstance(outcome, (*REDIS_DOWN, ResponseError)):
                log.warning("top of %s not announced (%s): the next change or sweep announces it", board, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
