"""Rate limits in Redis, per session and per client address, shared by every gateway process.

One script (ratelimit.lua) counts all of a request's limits and, for a write, appends its command
to the stream when they allow it: the whole admission of a write is one round trip. (The `limits`
library did this before, at one script call per limit plus the XADD; on the hot path that was a
fifth of a save's gateway CPU.) Keys live under `ratelimit:`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared import keys
from shared.pipelined import PipelinedRedis, Script
from shared.settings import Settings, parse_rate

SCRIPT = Script((Path(__file__).parent / "ratelimit.lua").read_text())
NO_SESSION = -1  # the script's answer when the command's session key is gone


class SessionGone(Exception):
    """The caller's `sessions:` key no longer exists: its cookie is signed but names no live session."""


class RateLimits:
    def __init__(self, redis: PipelinedRedis, settings: Settings) -> None:
        self.redis = redis
        self.rules = {
            "session-writes": parse_rate(settings.rate_limit_session_writes),
            "address-writes": parse_rate(settings.rate_limit_address_writes),
            "address-sessions": parse_rate(settings.rate_limit_address_sessions),
        }

    async def admit(
        self, hits: Sequence[tuple[str, str]], publish: tuple[str, str, str, Mapping[bytes, bytes]] | None = None
    ) -> int | None:
        """Count a hit on each `(rule, who)`: None if every limit allows it, else the seconds to wait.

        `publish` is `(session id, stream, trim MINID, fields)`: the entry to append only when
        admitted; SessionGone when that session's key does not exist.
        """
        counted = [(rule, who, rate) for rule, who in hits if (rate := self.rules[rule])]
        script_keys = [keys.rate_limit(rule, who) for rule, who, _ in counted]
        args: list[str | bytes | int] = [len(counted)]
        for _, _, (count, period_ms) in counted:
            args += (count, period_ms)
        if publish is not None:
            session_id, stream, min_id, fields = publish
            script_keys += (keys.session(session_id), stream)
            args.append(min_id)
            for field, value in fields.items():
                args += (field, value)
        wait_ms = int(await self.redis.script(SCRIPT, script_keys, args))
        if wait_ms == NO_SESSION:
            raise SessionGone
        return math.ceil(wait_ms / 1000) if wait_ms else None
