"""Connecting to Redis: retries that ride out a restart, checks that say what is missing."""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from shared import keys
from shared.pipelined import as_map

log = logging.getLogger(__name__)

REQUIRED_MODULES = {"ReJSON": "JSON", "search": "Search"}

# What a dropped, refused or restarting (still loading) Redis raises.
REDIS_DOWN = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
# What redis-py's asyncio client can raise instead of ConnectionError when it writes to a connection the
# server closed (redis/redis-py#4287; seen here when a cluster master died), and uvloop's RuntimeError
# for a write to a closed transport (seen as a master came back: a worker died of it): unavailable()
# tells them from our own mistakes by where they were raised.
TRANSPORT_LEAKS = (AttributeError, TypeError, RuntimeError)
REDIS_CONNECTION_MODULE = os.path.join("redis", "asyncio", "connection.py")


def unavailable(error: BaseException) -> str | None:
    """Why Redis refused a command for now ("unreachable", "busy", "out of memory", "cluster down"); None if a
    retry won't help.

    A busy Redis (a script past busy-reply-threshold) answers every command `BUSY ...`, and one at
    maxmemory refuses writes with `OOM ...`: both pass, as a lost connection does, so a request is
    answered 503 and a worker waits and carries on. So does a Redis Cluster that lost a master
    (`CLUSTERDOWN`, until it is back or replaced) or moves a slot under a multi-key command (`TRYAGAIN`),
    and a command redis-py gave up redirecting: its asyncio cluster client sends ASKING and the command
    on different connections of its pool, so a script whose keys went ahead to a slot's new master
    mid-migration bounces until the migration ends.
    """
    if isinstance(error, REDIS_DOWN) or leaked_by_transport(error):
        return "unreachable"
    if isinstance(error, exceptions.OutOfMemoryError):
        return "out of memory"
    if isinstance(error, exceptions.ClusterDownError | exceptions.TryAgainError):
        return "cluster down"
    if isinstance(error, exceptions.ClusterError):  # redirections past redis-py's limit: a slot mid-move
        return "cluster moving a slot"
    if isinstance(error, exceptions.ResponseError) and str(error).startswith("BUSY "):  # not BUSYGROUP
        return "busy"
    return None


def leaked_by_transport(error: BaseException) -> bool:
    """A TRANSPORT_LEAKS error raised inside redis-py's connection code: a lost connection in disguise."""
    if not isinstance(error, TRANSPORT_LEAKS):
        return False
    frames = traceback.walk_tb(error.__traceback__)
    return any(frame.f_code.co_filename.endswith(REDIS_CONNECTION_MODULE) for frame, _line in frames)


class RedisNotReady(RuntimeError):
    """Redis is unreachable or lacks a module; the message says how to fix it."""


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, *, max_connections: int = 256) -> Redis:
    """A client whose commands retry briefly on a dropped connection, then fail fast."""
    pool = BlockingConnectionPool.from_url(
        url,
        protocol=3,  # replies as maps: FT.SEARCH and XINFO read by name, not by position
        max_connections=max_connections,
        timeout=2,
        socket_connect_timeout=2,
        socket_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), retries=3),
        retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
    )
    return Redis(connection_pool=pool)


def connect_cluster(url: str, *, max_connections_per_node: int = 256) -> RedisCluster:
    """A Redis Cluster client, seeded by the node at `url`; it learns the others and follows MOVED."""
    return RedisCluster.from_url(
        url,
        protocol=3,
        max_connections=max_connections_per_node,
        socket_connect_timeout=2,
        socket_timeout=5,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), retries=3),
        retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
    )


def missing_modules(loaded: Iterable[str]) -> list[str]:
    """The required modules absent from `loaded` (MODULE LIST's names), as people call them."""
    names = set(loaded)
    return [label for name, label in REQUIRED_MODULES.items() if name not in names]


def module_names(module_list: Any) -> set[str]:
    """The names in a MODULE LIST answer, over RESP3 (maps) or RESP2 (flat lists)."""
    entries = [entry if isinstance(entry, dict) else as_map(entry) for entry in module_list]
    return {entry[b"name"].decode() for entry in entries}


async def wait_until_ready(redis: Redis, url: str, timeout_s: float = 30.0) -> bool:
    """Wait for Redis (it may still be starting beside us), then insist on JSON and Search.

    `redis` is a client of the one node at `url`. True when that node is part of a Redis Cluster,
    which is then waited for, too, until it says cluster_state:ok (every slot served).
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while True:
        try:
            await redis.ping()
            cluster = await is_cluster(redis)
            if cluster:
                await cluster_ok(redis, url)
            break
        except (*REDIS_DOWN, exceptions.ResponseError) as error:
            if unavailable(error) is None and not isinstance(error, ClusterNotOk):
                raise
            if loop.time() > give_up:
                raise RedisNotReady(not_ready(error, url, timeout_s)) from error
            log.warning("waiting for Redis at %s: %s", redact(url), error)
            await asyncio.sleep(1)
    missing = missing_modules(module_names(await redis.module_list()))
    if missing:
        raise RedisNotReady(
            f"Redis at {redact(url)} lacks the {' and '.join(missing)} module(s). Use Redis 8 or "
            "Redis Stack (both ship JSON and Search), or leave REDIS_URL unset and use `make run`."
        )
    return cluster


def not_ready(error: BaseException, url: str, waited_s: float) -> str:
    if isinstance(error, ClusterNotOk):
        return f"{error} after {waited_s:.0f} s: {CLUSTER_HELP}"
    return (
        f"cannot reach Redis at {redact(url)} ({error}). Set REDIS_URL to a Redis 8 "
        "(or Redis Stack) server, or leave it unset and use `make run`, which starts one."
    )


CLUSTER_HELP = (
    "it must serve all 16384 slots with its masters in agreement (see `CLUSTER INFO` and "
    "`redis-cli --cluster check` on any node), or use `make run-cluster`, which starts one that is"
)


class ClusterNotOk(exceptions.ResponseError):
    """The node belongs to a Redis Cluster that does not serve every slot yet (or any more)."""


async def connect_any(url: str, *, max_connections: int = 256) -> Redis | RedisCluster:
    """A client of what `url` names: that Redis, or the Redis Cluster the node belongs to (for the tools)."""
    probe = connect(url, max_connections=1)
    try:
        cluster = await is_cluster(probe)
    finally:
        await probe.aclose()
    if cluster:
        return connect_cluster(url, max_connections_per_node=max_connections)
    return connect(url, max_connections=max_connections)


async def is_cluster(redis: Redis) -> bool:
    """Whether the node runs in cluster mode: INFO's cluster_enabled, so no setting has to say so."""
    info = await redis.info("cluster")
    return bool(int(info.get("cluster_enabled", 0)))


async def cluster_ok(redis: Redis, url: str) -> None:
    info = await redis.cluster("info")
    state = info.get("cluster_state")
    if state != "ok":
        raise ClusterNotOk(f"the Redis Cluster of {redact(url)} says cluster_state:{state}")


async def ensure_indexes(execute: Callable[..., Awaitable[Any]], shard_tags: Sequence[str] | None = None) -> None:
    """FT.CREATE is atomic, so racing services each try and treat "already exists" as success.

    `execute` sends one command: redis-py's `execute_command` in a worker, the gateway's own client there;
    on a Redis Cluster (`shard_tags`, see keys.index_names) it must send it to the owner of the name's slot.
    """
    for index, definition in keys.INDEX_DEFINITIONS.items():
        for name in keys.index_names(index, shard_tags):
            try:
                await execute("FT.CREATE", name, *definition)
                log.info("created search index %s", name)
            except exceptions.ResponseError as error:
                if "already exists" not in str(error).lower():
                    raise


def cluster_shard_tags(redis: RedisCluster) -> list[str]:
    """The hash tag of each master's indexes, from redis-py's slot map (keys.shard_tags)."""
    masters = [master.name for master in redis.get_primaries()]
    return list(keys.shard_tags(masters, lambda slot: redis.nodes_manager.slots_cache[slot][0].name).values())


async def ensure_cluster_indexes(redis: RedisCluster) -> None:
    """The indexes on every master of the cluster, each sent to the master its name's slot lives on."""

    async def execute(*command: Any) -> Any:
        return await redis.execute_command(*command, target_nodes=redis.get_node_from_key(command[1]))

    await ensure_indexes(execute, cluster_shard_tags(redis))
