"""Redis's forks (AOF rewrites, RediSearch's fork GC) during a measurement, and waiting them out.

With append-only on, a write-heavy run makes Redis rewrite its AOF every few seconds: a forked
child copies the dataset, on the same two cores as everything else. Each figure starts once no
fork from the load before it is still running, so one operation's rewrites are not charged to the
next, and counts the forks that happened during its own runs.
"""

from __future__ import annotations

import time

import redis

FORK_BUSY = ("aof_rewrite_in_progress", "rdb_bgsave_in_progress", "module_fork_in_progress")


def forks(redis_url: str | None) -> int:
    """Redis's fork count so far (0 when no Redis is known, e.g. attached to a remote one)."""
    if redis_url is None:
        return 0
    with redis.Redis.from_url(redis_url) as client:
        return int(client.info("stats")["total_forks"])


def wait_until_quiet(redis_url: str | None, timeout_s: float = 120) -> float:
    """Until no fork is running; the seconds waited."""
    if redis_url is None:
        return 0.0
    started = time.monotonic()
    with redis.Redis.from_url(redis_url) as client:
        while any(client.info("persistence").get(flag) for flag in FORK_BUSY):
            if time.monotonic() - started > timeout_s:
                break
            time.sleep(0.2)
    return time.monotonic() - started
