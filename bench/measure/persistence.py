"""Redis's forks (AOF rewrites, RediSearch's fork GC) during a measurement, and waiting them out.

With append-only on, a write-heavy run makes Redis rewrite its AOF every few seconds: a forked
child copies the dataset, on the same two cores as everything else. Each figure starts once no
fork from the load before it is still running, so one operation's rewrites are not charged to the
next, and counts the forks that happened during its own runs. On a Redis Cluster that is every
node's: a rewrite on any of them takes its share of the same cores.
"""

from __future__ import annotations

import time

import redis

from bench.measure import fixtures

FORK_BUSY = ("aof_rewrite_in_progress", "rdb_bgsave_in_progress", "module_fork_in_progress")


def nodes(redis_url: str | None) -> list[str]:
    """The URL's Redis, or every node of the Redis Cluster it is one of (none when no Redis is known,
    e.g. attached to a remote one)."""
    if redis_url is None:
        return []
    client = fixtures.client(redis_url)
    try:
        if isinstance(client, redis.RedisCluster):
            return [f"redis://{node.host}:{node.port}" for node in client.get_nodes()]
        return [redis_url]
    finally:
        client.close()


def forks(redis_url: str | None) -> int:
    """Redis's fork count so far, over every node on a cluster."""
    total = 0
    for url in nodes(redis_url):
        with redis.Redis.from_url(url) as client:
            total += int(client.info("stats")["total_forks"])
    return total


def wait_until_quiet(redis_url: str | None, timeout_s: float = 120) -> float:
    """Until no fork is running, on any node of a cluster; the seconds waited."""
    started = time.monotonic()
    for url in nodes(redis_url):
        with redis.Redis.from_url(url) as client:
            while any(client.info("persistence").get(flag) for flag in FORK_BUSY):
                if time.monotonic() - started > timeout_s:
                    break
                time.sleep(0.2)
    return time.monotonic() - started
