"""The one consumer loop both workers run.

Lifecycle: connect and check Redis, then, for each partition of the command
stream (STREAM_PARTITIONS), create the group and loop: read a batch, apply it,
and settle it (reply, dead-letter, acknowledge), while reading and preparing the
next one. Now and then, claim what dead consumers left pending and forget
consumers long gone. A Redis that is unreachable, busy (a script past
busy-reply-threshold) or out of memory is waited out: what this consumer holds
stays pending and is read again. SIGTERM (or Ctrl-C) stops the reading; the
batch in hand is settled before the process exits.

Applying and settling are two scripts, because on a Redis Cluster a command's
target key and its stream live in different hash slots: shared/apply.lua writes
the targets, checking each command's deadline (on Redis's clock) and, for a
document, its version (the stream id of the last command that wrote it), so a
late or repeated command never overwrites a newer one; then shared/settle.lua
writes the replies and the dead letters and acknowledges, atomically, in the
partition's slot. A worker that dies between the two leaves its entries pending:
applied again, they find their own version and are only answered and acknowledged.
On a cluster apply.lua runs once per master a batch touches, not once per slot: a
batch of many players' documents is a few calls whatever its size, down one
connection a master (docs/scaling.md, "The write path on a cluster").

A handler's action may name one of apply_commands.lua's operations instead of a
Redis command, and bring follow-ups on keys in other slots (Action). A service may also name
actions to apply at each sweep (the leaderboard worker announces every board's top there).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import uvloop
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ResponseError,
)

from shared import keys
from shared.connection import (
    REDIS_DOWN,
    TRANSPORT_LEAKS,
    RedisNotReady,
    connect,
    connect_cluster,
    ensure_cluster_indexes,
    ensure_indexes,
    redact,
    unavailable,
    wait_until_ready,
)
from shared.pipelined import PipelinedRedis, Script, read_entries
from shared.protocol import (
    DEAD_LETTERED,
    LUA_OUTCOMES,
    LUA_TIES,
    STORAGE_ERROR,
    WORKER_REPLIES,
    CommandStream,
    Event,
    EventType,
    Outcome,
    PoisonEvent,
    Reply,
    now_ms,
    request_id_in,
)
from shared.settings import Settings

log = logging.getLogger(__name__)


Entry = tuple[bytes, dict[bytes, bytes]]


def stream_entries(answer: Any) -> list[Entry]:
    """The entries of a one-stream XREAD / XREADGROUP answer, as redis-py gives it over RESP3."""
    if not answer:
        return []
    (batch,) = answer.values()
    entries: list[Entry] = batch[0] if batch else []
    return entries


# Not frozen, for the reason Event is not (shared/protocol.py).
@dataclass(slots=True)
class Action:
    """A handler's verdict on one event: one Redis command on one key, and the reply for each outcome.

    `command` is a Redis command, or the name of one of shared/apply_commands.lua's OPERATIONS (an
    atomic step one command can't take, such as moving a player's entry), which may also touch
    `extra_keys`, all in `key`'s hash slot. A true result is OK or a non-zero count; a false one is
    nil or zero (JSON.SET ... XX on a missing key, ZADD GT CH that changed nothing). A non-zero
    `expire_s` sets the key's TTL after a true result. `versioned`: the key is only ever written by
    one session's commands (so by one partition, in stream order), and a version key guards it
    against older commands.

    Optional, checked in the same atomic step as the write (shared/apply_commands.lua): `expect`, a
    precondition on the versioned document (the caller's If-Match); `limits`, what the written JSON
    document must keep within (else it is restored). `refusals` answers the outcomes these add, and
    those an operation returns of its own (BANNED).

    `also`: follow-ups on other keys (in other slots, on a cluster), applied in the same batch as
    this one, idempotent, and answering no one: the caller's reply is this action's. They skip the
    deadline check, so a follow-up lands wherever its action may have: a score's season archive
    never lacks what its current board had.

    `run`: a verified score's run, checked and marked used with the write (RunCheck). Such an action
    is applied before its follow-ups, which follow only when its run let it through: a refused
    score writes nothing anywhere.
    """

    command: str
    key: str
    args: tuple[str, ...]
    if_true: Reply
    if_false: Reply
    expire_s: int = 0
    versioned: bool = False
    expect: str = ""
    limits: Limits | None = None
    refusals: Mapping[Outcome, Reply] = field(default_factory=dict)
    extra_keys: tuple[str, ...] = ()
    also: tuple[Action, ...] = ()
    run: RunCheck | None = None


@dataclass(frozen=True, slots=True)
class RunCheck:
    """What apply_commands.lua's run_refusal checks: the run's key (in the action's slot), its player,
    the score's time (ms, on the clock the run's start was taken on), the board's bounds, the score."""

    key: str
    player: str
    at_ms: int
    min_ms: int
    max_ms: int
    per_s: float
    base: float
    score: float


@dataclass(frozen=True, slots=True)
class Limits:
    """What a written JSON document must keep within: as the gateway checks a whole body."""

    max_bytes: int
    max_values: int
    max_depth: int


Handler = Callable[[Event], Action]
"""Pure: validates the event and says what to do; raises PoisonEvent when it can't be applied."""


Prepare = Callable[[Redis | RedisCluster], Awaitable[None]]
"""A service's own start-up step (an idempotent migration, say), run once connected, before reading."""

HERE = Path(__file__).parent
# The Lua both scripts apply commands with, after the outcome codes it returns and the order of ties.
APPLY_COMMANDS = LUA_OUTCOMES + LUA_TIES + (HERE / "apply_commands.lua").read_text()
# Flagged so that on a cluster one call may write keys of every slot its master serves (apply.lua).
CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"
APPLY_SCRIPT = Script(CROSS_SLOT + APPLY_COMMANDS + (HERE / "apply.lua").read_text())
SETTLE_SCRIPT = Script(CROSS_SLOT + APPLY_COMMANDS + (HERE / "settle.lua").read_text())
# The settle script let past maxmemory: replies, dead letters and acknowledgements are small, and a
# batch Redis refused to apply must still be answered (Partition._refuse).
SETTLE_PAST_MAXMEMORY_SCRIPT = Script(
    "#!lua flags=allow-oom,allow-cross-slot-keys\n" + SETTLE_SCRIPT.source.removeprefix(CROSS_SLOT)
)
COUNTS_EVERY_S = 1.0  # how often, at most, a worker adds its outcomes to keys.EVENT_COUNTS


def cluster_slot(key: str) -> int:
    return key_slot(key.encode())


# The outcomes of a command that was, or may be taken as, applied: its follow-ups follow.
LET_THROUGH = frozenset({Outcome.APPLIED, Outcome.NOT_APPLIED, Outcome.SUPERSEDED})
POOL_EXHAUSTED_PAUSE_S = 0.05  # a client-side pool exhausted is our bug, not Redis's state: no long wait


class Ready(NamedTuple):
    """A command to apply: the stream entry it came in, its event, and what its handler says to do."""

    entry_id: bytes
    event: Event
    action: Action


class Command(NamedTuple):
    """What a script applies: the action, its stream entry id (a document's version), its deadline (0: none)."""

    action: Action
    seq: str
    deadline_ms: int


class Applied(NamedTuple):
    """A command applied by apply.lua, before the settle script answers it."""

    ready: Ready
    outcome: int | str


def command_of(ready: Ready, *, follow_up: bool = False) -> Command:
    """A follow-up skips the deadline check: it lands wherever its action may have."""
    return Command(ready.action, ready.entry_id.decode(), 0 if follow_up else ready.event.deadline_ms)


class ScriptCall:
    """A script's KEYS and ARGV as they are built. ARGV[1] is a JSON document naming the rest by
    index (Lua counts from 1); the strings (a command's arguments, a reply's status and body) go in
    ARGV of their own, not inside the JSON: Redis decoding a save's document escaped inside it cost
    more than the JSON.SET (docs/benchmarks.md, "The workers' scripts")."""

    def __init__(self, *script_keys: str, node_wide: bool = False) -> None:
        self.keys = list(script_keys)
        # A node-wide call (a cluster's): the commands' keys go by name in ARGV[1]'s "keys", and the
        # script checks that its master serves each before it writes (apply.lua).
        self.names: list[str] | None = [] if node_wide else None
        self.argv: list[bytes | str] = [b""]
        self._answers: dict[int, int] = {}  # id(Reply) -> its status's index: each reply once a call

    def key(self, key: str) -> int:
        """A key in KEYS: the call's own, in the slot it is routed to."""
        self.keys.append(key)
        return len(self.keys)

    def target(self, key: str) -> int:
        """A command's key: in KEYS, or by name in a node-wide call."""
        if self.names is None:
            return self.key(key)
        self.names.append(key)
        return len(self.names)

    def routed_by(self) -> list[str]:
        """KEYS as sent: a node-wide call with none of its own declares its first target, to reach its master."""
        return self.keys if self.keys or self.names is None else self.names[:1]

    def values(self, values: Sequence[bytes | str]) -> list[int]:
        """Where `values` are in ARGV: [first index, count]."""
        first = len(self.argv) + 1
        self.argv += values
        return [first, len(values)]

    def answer(self, reply: Reply) -> int:
        """The index of the reply's status in ARGV; its body is the next."""
        index = self._answers.get(id(reply))
        if index is None:
            index = self._answers[id(reply)] = self.values(reply.wire())[0]
        return index

    def args(self, packed: dict[str, Any]) -> list[bytes | str]:
        if self.names is not None:
            packed["keys"] = self.names
        self.argv[0] = orjson.dumps(packed)
        return self.argv


def once_each(follow_ups: list[Ready]) -> list[Ready]:
    """A batch's follow-ups with each repeated one applied once, at its last place: follow-ups are
    idempotent, and every score of a batch on one board follows up with the same announcement."""
    last = {(action.command, action.key, action.args): index for index, (_, _, action) in enumerate(follow_ups)}
    return [follow_ups[index] for index in sorted(last.values())] if len(last) < len(follow_ups) else follow_ups


@dataclass(slots=True)
class Batch:
    """Entries read together, sorted into what to apply, what only gets a reply, and what is poison."""

    entry_ids: list[bytes]
    ready: list[Ready] = field(default_factory=list)
    follow_ups: list[Ready] = field(default_factory=list)  # the ready actions' `also`, answering no one
    verified: list[Ready] = field(default_factory=list)  # actions with a run: applied first (Action.run)
    gated: list[Ready] = field(default_factory=list)  # their follow-ups, applied when the run let them through
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    dead: list[tuple[Entry, str]] = field(default_factory=list)


@dataclass(slots=True)
class Stats:
    applied: int = 0
    expired: int = 0
    dead_lettered: int = 0
    refused: int = 0  # answered 503, unapplied: Redis was out of memory
    unreplicated: int = 0  # answered 503, applied on the master only (DURABILITY=replicated)

    def outcomes(self) -> dict[str, int]:
        """The counts by the outcome names GET /metrics shows."""
        return {
            "applied": self.applied,
            "expired": self.expired,
            "dead-lettered": self.dead_lettered,
            "refused": self.refused,
            "unreplicated": self.unreplicated,
        }


class Worker:
    """One process: a consumer of every partition of its command stream, sharing two Redis clients.

    The loop's own commands (each partition's reads, the apply and settle scripts) go through the
    pipelined client the gateway uses (shared/pipelined.py): one connection a master, every command
    of an event-loop turn in one write, and a connection of its own for each blocked read. redis-py's
    client, whose work for each command (routing, packing, a write) was most of the worker's CPU
    (docs/benchmarks.md, "The workers' loop on the pipelined client"), keeps the rest: groups,
    claims, counts, start-up.
    """

    redis: Redis | RedisCluster  # which one, run() learns from Redis itself
    loop_client: PipelinedRedis

    def __init__(
        self,
        stream: CommandStream,
        handlers: Mapping[EventType, Handler],
        settings: Settings,
        sweep: Sequence[Action] = (),
        prepare: Prepare | None = None,
    ) -> None:
        unhandled, stray = stream.events - handlers.keys(), handlers.keys() - stream.events
        if unhandled or stray:  # at start, not as a dead letter a command later
            names = ", ".join(sorted(unhandled | stray))
            raise ValueError(f"{stream.group}'s handlers must be those of {stream.name}'s command types: {names}")
        self.stream = stream
        self.handlers = handlers
        self.settings = settings
        self.sweep = sweep
        self.prepare = prepare
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stats = Stats()
        self.published: dict[str, int] = {}  # the counts already added to keys.EVENT_COUNTS
        self.counts_due: asyncio.Task[None] | None = None  # the next publish_counts, at most one waiting
        self.counts_published_at = -COUNTS_EVERY_S  # on the event loop's clock
        self.stopping = asyncio.Event()
        self.replicated = settings.durability == "replicated"
        self.masters: dict[str, Redis] = {}  # DURABILITY=replicated on a cluster: a client of each master

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the batches in hand")
            self.stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await self.connect()
        if self.prepare is not None:
            await self.prepare(self.redis)
        partitions = range(self.settings.stream_partitions)
        log.info(
            "consumer %s of group %r on %s (partitions 0-%d) at %s",
            self.consumer, self.stream.group, self.stream.key(0), partitions[-1], redact(self.settings.redis_url),
        )  # fmt: skip
        gc.freeze()  # start-up's objects live as long as the process: keep them out of every collection
        await asyncio.gather(*(Partition(self, number).run() for number in partitions))
        if self.counts_due is not None:
            await self.counts_due  # stopping, it publishes at once
        await self.publish_counts()
        await self.aclose()
        stats = self.stats
        log.info(
            "stopped: applied %d, expired %d, dead-lettered %d, refused %d, unreplicated %d",
            stats.applied, stats.expired, stats.dead_lettered, stats.refused, stats.unreplicated,
        )  # fmt: skip

    async def connect(self) -> None:
        """Wait for Redis, and take the clients for what it is: one server or a cluster."""
        url = self.settings.redis_url
        probe = connect(url, max_connections=1)
        try:
            cluster = await wait_until_ready(probe, url)
        finally:
            await probe.aclose()
        # redis-py's client serves each partition's sweep between its reads, one command at a time,
        # and the event counts' pipeline.
        connections = self.settings.stream_partitions + 1
        if cluster:
            cluster_client = connect_cluster(url, max_connections_per_node=connections)
            await cluster_client.initialize()
            self.redis = cluster_client
        else:
            self.redis = connect(url, max_connections=connections)
        # A blocked read a partition: never more, so a read never waits for another's connection.
        self.loop_client = PipelinedRedis(url, max_blocking=self.settings.stream_partitions)
        await self.loop_client.discover()
        if self.replicated:
            await self.check_replicas()

    def node_of(self, key: str) -> str:
        """The master `key` is on ("" on a single Redis): a batch's script calls are one per master it touches."""
        return self.loop_client.master_of(key)

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.loop_client.aclose()
        for client in self.masters.values():
            await client.aclose()

    async def check_replicas(self) -> None:
        """DURABILITY=replicated: say which masters lack the replicas a write must reach (their writes
        are answered 503 until a replica is in sync), rather than let it be found out write by write."""
        wanted = self.settings.durability_replicas
        if isinstance(self.redis, RedisCluster):
            infos = await self.redis.info("replication", target_nodes=RedisCluster.PRIMARIES)
            found = {name: int(info.get("connected_slaves", 0)) for name, info in infos.items()}
        else:
            found = {"Redis": int((await self.redis.info("replication")).get("connected_slaves", 0))}
        for master, replicas in found.items():
            if replicas < wanted:
                log.error(
                    "DURABILITY=replicated wants %d replica(s) of every master; %s has %d: its writes are answered "
                    "503 until one is in sync", wanted, master, replicas,
                )  # fmt: skip

    def master(self, node: str) -> Redis:
        """A client of one master by its cluster name (host:port), or of the single Redis (""), for calls
        that must share a connection with their WAIT: redis-py's cluster client picks one per command."""
        if not node or not isinstance(self.redis, RedisCluster):
            return cast(Redis, self.redis)
        client = self.masters.get(node)
        if client is None:
            host, _, port = node.rpartition(":")
            parts = urlsplit(self.settings.redis_url)
            auth = parts.netloc.rpartition("@")[0]
            netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
            url = urlunsplit(parts._replace(netloc=netloc))
            client = self.masters[node] = connect(url, max_connections=2 * self.settings.stream_partitions + 2)
        return client

    async def apply_replicated(self, node: str, script_keys: list[str], args: list[bytes | str]) -> tuple[Any, int]:
        """apply.lua, then WAIT on the same connection: its answer, and how many replicas confirmed every
        write on that master up to its own (the script always writes, keys.replication_mark). A key
        the master does not serve (MOVED, ASK) answers ELSEWHERE."""
        client = self.master(node)
        wanted, timeout_ms = self.settings.durability_replicas, self.settings.durability_timeout_ms
        for _ in range(2):
            pipeline = client.pipeline(transaction=False)
            pipeline.evalsha(APPLY_SCRIPT.sha, len(script_keys), *script_keys, *args)
            pipeline.execute_command("WAIT", wanted, timeout_ms)
            found, acked = await pipeline.execute(raise_on_error=False)
            if not isinstance(found, NoScriptError):
                break
            await client.script_load(APPLY_SCRIPT.source)  # a promoted replica, or a Redis restarted empty
        if isinstance(found, MovedError | AskError):
            return Outcome.ELSEWHERE, 0
        if isinstance(found, Exception):
            raise found
        return found, int(acked)

    async def ensure_indexes(self) -> None:
        if isinstance(self.redis, RedisCluster):
            await ensure_cluster_indexes(self.redis)
        else:
            await ensure_indexes(self.redis.execute_command)

    def count_settled(self) -> None:
        """After a batch: its outcomes reach the counts GET /metrics reads within COUNTS_EVERY_S, with
        every other batch's meanwhile (a round trip a batch was a large share of a worker's CPU,
        docs/benchmarks.md)."""
        if self.counts_due is None or self.counts_due.done():
            self.counts_due = asyncio.create_task(self._publish_counts_soon())

    async def _publish_counts_soon(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.counts_published_at + COUNTS_EVERY_S - loop.time())
        self.counts_published_at = loop.time()
        await self.publish_counts()

    async def publish_counts(self) -> None:
        """Add what was settled since the last call to the counts GET /metrics reads: one round trip.

        The new counts are taken before the await, so partitions settling at once never add the same
        ones twice; if Redis does not take them (busy, full, gone), they are added with the next
        call's, and the batches, already settled, go on.
        """
        now = self.stats.outcomes()
        added = {outcome: count - self.published.get(outcome, 0) for outcome, count in now.items()}
        added = {outcome: count for outcome, count in added.items() if count}
        if not added:
            return
        self.published = now
        pipeline = self.redis.pipeline(transaction=False)
        for outcome, count in added.items():
            pipeline.hincrby(keys.EVENT_COUNTS, keys.event_count_field(self.stream.group, outcome), count)
        try:
            await pipeline.execute()
        except (*REDIS_DOWN, ResponseError) as error:  # counts are not worth a batch: they go with the next
            self.published = {outcome: count - added.get(outcome, 0) for outcome, count in self.published.items()}
            log.debug("event counts not published (%s); they go with the next batch's", error)

    def action(self, event: Event, stream_key: str) -> Action:
        handler = self.handlers.get(event.type)
        if handler is None:
            raise PoisonEvent(f"event type {event.type} does not belong on {stream_key}")
        return handler(event)


class Partition:
    """This process's consumer of one partition's stream: the loop of read, apply and settle."""

    def __init__(self, worker: Worker, number: int) -> None:
        self.worker = worker
        self.number = number
        self.key = worker.stream.key(number)
        self.group = worker.stream.group
        self.dead_letters = keys.dead_letters(number)
        self.settings = worker.settings
        self.redis = worker.redis
        self.consumer = worker.consumer
        self.stats = worker.stats
        self._read_backlog = True  # our own pending entries first: after a start or a lost connection
        self._group_ready = False  # the group and the indexes exist: checked at start and after a NOGROUP

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sweep_every = self.settings.claim_idle_ms / 2000
        next_sweep = 0.0
        in_hand: list[Batch] | None = None  # read and prepared, not yet settled
        while not self.worker.stopping.is_set():
            try:
                if not self._group_ready:
                    await self._ensure_group()
                    await self.worker.ensure_indexes()
                    self._group_ready = True
                if loop.time() >= next_sweep:
                    await self._sweep()
                    next_sweep = loop.time() + sweep_every
                # Never block past the next sweep, so claims keep their schedule on an idle stream.
                block_ms = min(self.settings.block_ms, max(1, int((next_sweep - loop.time()) * 1000)))
                if self._read_backlog:
                    await self._process(await self._read(block_ms))
                else:
                    in_hand = await self._step(in_hand, block_ms)
            except MaxConnectionsError:
                log.exception("bug: this worker's redis-py connection pool is exhausted; retrying shortly")
                self._read_backlog = True
                await self._sleep_unless_stopping(POOL_EXHAUSTED_PAUSE_S)
            except (*REDIS_DOWN, ResponseError, ClusterError, *TRANSPORT_LEAKS) as error:
                reason = unavailable(error)
                if reason is None and "NOGROUP" in str(error):
                    log.warning("consumer group of %s vanished (Redis emptied?); recreating it", self.key)
                    self._group_ready = False
                elif reason is None:
                    raise
                else:
                    log.warning("Redis %s (%s); retrying in 1 s", reason, error)
                    self._read_backlog = True  # what we hold stays pending: the backlog read delivers it again
                    await self._sleep_unless_stopping(1)
                in_hand = None
        if in_hand is not None:
            try:
                await self._settle_all(in_hand)
            except (*REDIS_DOWN, ResponseError, ClusterError, *TRANSPORT_LEAKS) as error:
                if unavailable(error) is None:
                    raise
                log.warning("could not settle the last batch (%s); it stays pending for another consumer", error)
        await self._leave_group()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.worker.stopping.wait(), seconds)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read(self, block_ms: int) -> list[Entry]:
        """New entries, or our own pending ones while a backlog remains."""
        client = self.worker.loop_client
        read = ("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", self.settings.batch_size)
        if self._read_backlog:
            entries = read_entries(await client.execute(*read, "STREAMS", self.key, "0", route=self.key))
            self._read_backlog = bool(entries)
            return entries
        return read_entries(
            await client.blocking(block_ms, lambda ms: (*read, "BLOCK", ms, "STREAMS", self.key, ">"), route=self.key)
        )

    async def _step(self, in_hand: list[Batch] | None, block_ms: int) -> list[Batch]:
        """Settle the batch in hand while reading and preparing the next one.

        The read goes out first, so Redis answers it before it runs the scripts, and this process
        prepares the next batch while Redis applies the one before. Batches still settle one after
        another, in order; reading ahead is safe because `>` only hands out new entries.
        """
        reading = asyncio.ensure_future(self._read(block_ms))
        settling = asyncio.ensure_future(self._settle_all(in_hand)) if in_hand is not None else None
        try:
            return self._prepare(await reading)
        finally:
            if settling is not None:
                await settling

    async def _process(self, entries: list[Entry], deliveries: Mapping[bytes, int] | None = None) -> None:
        await self._settle_all(self._prepare(entries, deliveries))

    def _prepare(self, entries: list[Entry], deliveries: Mapping[bytes, int] | None = None) -> list[Batch]:
        """The entries as batches of at most BATCH_MAX_BYTES of payload (one entry at least), each
        applied by a script of its own: Redis runs a script alone, and one batch of the largest saves
        kept every other client waiting (docs/benchmarks.md)."""
        batches: list[Batch] = []
        part: list[Entry] = []
        size = 0
        for entry in entries:
            entry_size = len(entry[1].get(b"payload", b""))
            if part and size + entry_size > self.settings.batch_max_bytes:
                batches.append(self._prepare_part(part, deliveries))
                part, size = [], 0
            part.append(entry)
            size += entry_size
        return [*batches, self._prepare_part(part, deliveries)]

    def _prepare_part(self, entries: list[Entry], deliveries: Mapping[bytes, int] | None) -> Batch:
        """Decode each entry and ask its handler what to do; sort out the expired and the poison."""
        batch = Batch(entry_ids=[entry_id for entry_id, _ in entries])
        at = now_ms()
        for entry in entries:
            entry_id, fields = entry
            try:
                event = Event.decode(fields, self.number, entry_id)
            except PoisonEvent as error:
                batch.dead.append((entry, str(error)))
                continue
            delivered = (deliveries or {}).get(entry_id, 1)
            if delivered > self.settings.max_deliveries:
                batch.dead.append((entry, f"delivered {delivered} times"))
                batch.replies.append((event.reply_to, DEAD_LETTERED))
            elif event.expired(at):
                self._expired(batch, entry, delivered)
            else:
                try:
                    action = self.worker.action(event, self.key)
                    verified = action.run is not None
                    (batch.verified if verified else batch.ready).append(Ready(entry_id, event, action))
                    follow_ups = (Ready(entry_id, event, follow_up) for follow_up in action.also)
                    (batch.gated if verified else batch.follow_ups).extend(follow_ups)
                except PoisonEvent as error:
                    batch.dead.append((entry, str(error)))
                    batch.replies.append((event.reply_to, DEAD_LETTERED))
        batch.follow_ups = once_each(batch.follow_ups)
        return batch

    def _expired(self, batch: Batch, entry: Entry, delivered: int) -> None:
        """Past its deadline: its caller has had a 504. Dead-lettered if a consumer died holding it."""
        if delivered > 1:
            batch.dead.append((entry, f"abandoned past its deadline after {delivered} deliveries"))
        else:
            self.stats.expired += 1
            about = {"request_id": request_id_in(entry[1]) or None}
            log.debug("%s expired: past its deadline, not applied", entry[0].decode(), extra=about)

    async def _settle_all(self, batches: list[Batch]) -> None:
        for batch in batches:
            await self._settle(batch)

    async def _settle(self, batch: Batch) -> None:
        """Apply the commands, answer, dead-letter and acknowledge.

        Commands whose targets are on the partition's own master (on a single Redis, every command)
        are applied by the settle script itself: one atomic step, one round trip. The others (on a
        Redis Cluster) are applied first by apply.lua, one call per master, and settled with their
        outcomes. Should the settle script find the slot map moved (ELSEWHERE, nothing written), its
        commands go the apply path too.
        """
        if not batch.entry_ids:
            return
        follow_ups, applied = batch.follow_ups, []
        if batch.verified:  # their runs first: only a score let through follows up
            applied = await self._apply_ahead(batch.verified, [])
            through = {one.ready.entry_id for one in applied if one.outcome in LET_THROUGH}
            follow_ups = once_each([*follow_ups, *(one for one in batch.gated if one.entry_id in through)])
        here, elsewhere = self._split(batch.ready)
        follow_ups_here, follow_ups_elsewhere = self._split(follow_ups)
        applied += await self._apply_ahead(elsewhere, follow_ups_elsewhere)
        outcomes = await self._settle_call(batch, here, applied, follow_ups_here)
        if outcomes == Outcome.ELSEWHERE:
            log.info("the slot map moved under a batch: applying its commands before settling it")
            applied += await self._apply_ahead(here, follow_ups_here)
            here, follow_ups_here = [], []
            outcomes = await self._settle_call(batch, here, applied, follow_ups_here)
        if not isinstance(outcomes, list):  # refused for want of memory: answered 503, unapplied
            return
        answered = len(here) + len(applied)
        self._count(batch, [*here, *(one.ready for one in applied)], [*map(outcome_of, outcomes[:answered])])
        self._check_follow_ups(follow_ups_here, [outcome_of(raw) for raw in outcomes[answered:]])
        self._count_dead(batch)
        self.worker.count_settled()

    async def _apply_ahead(self, ready: list[Ready], follow_ups: list[Ready]) -> list[Applied]:
        """Apply commands and their follow-ups before the settle script, which then answers the commands."""
        if not ready and not follow_ups:
            return []
        commands = [*map(command_of, ready), *(command_of(one, follow_up=True) for one in follow_ups)]
        outcomes = await self._apply(commands)
        self._check_follow_ups(follow_ups, outcomes[len(ready) :])
        return [Applied(one, outcome) for one, outcome in zip(ready, outcomes[: len(ready)], strict=True)]

    async def _settle_call(
        self, batch: Batch, here: list[Ready], applied: list[Applied], follow_ups: list[Ready]
    ) -> list[Any] | int | None:
        """The settle script's outcomes, or ELSEWHERE; None when Redis refused it for want of memory
        (nothing of it written; what apply.lua applied stands), and the batch is answered as such."""
        script_keys, args = self._settlement(batch, here, applied, follow_ups)
        try:
            outcomes: list[Any] | int = await self.worker.loop_client.script(SETTLE_SCRIPT, script_keys, args)
        except OutOfMemoryError:
            await self._refuse(batch, here, applied)
            return None
        return outcomes

    def _count(self, batch: Batch, ready: list[Ready], outcomes: list[int | str]) -> None:
        """Count the outcomes and say what is worth a line (their replies are settle.lua's)."""
        for (entry_id, event, action), outcome in zip(ready, outcomes, strict=True):
            about = {"request_id": event.request_id or None}
            what = (event.type, event.id, action.key)
            if outcome == Outcome.APPLIED:
                self.stats.applied += 1
            elif outcome == Outcome.EXPIRED:  # past its deadline on Redis's clock
                self._expired(batch, (entry_id, event.encode()), 1)
            elif outcome == Outcome.REFUSED:
                self.stats.refused += 1
            elif outcome == Outcome.UNREPLICATED:
                self.stats.unreplicated += 1
                log.warning("%s %s on %s: no replica confirmed it in time", *what, extra=about)
            elif isinstance(outcome, str):
                log.error("%s %s on %s failed in Redis: %s", *what, outcome, extra=about)
            if log.isEnabledFor(logging.DEBUG) and isinstance(outcome, int):
                log.debug("%s %s on %s: %s", *what, Outcome(outcome).name.lower(), extra=about)

    def _split(self, ready: list[Ready]) -> tuple[list[Ready], list[Ready]]:
        """Those whose target is on the partition's master (the settle script applies them), and the others.
        DURABILITY=replicated: none, as a reply must not be written before its write is on a replica."""
        if self.worker.replicated:
            return [], ready
        own = self.worker.node_of(self.key)
        here: list[Ready] = []
        elsewhere: list[Ready] = []
        for one in ready:
            (here if self.worker.node_of(one.action.key) == own else elsewhere).append(one)
        return here, elsewhere

    @staticmethod
    def _check_follow_ups(follow_ups: list[Ready], outcomes: list[int | str]) -> None:
        """A follow-up answers no one: only a failure is worth a line (Redis's error, or out of memory)."""
        for (_, event, action), outcome in zip(follow_ups, outcomes, strict=True):
            if isinstance(outcome, str) or outcome in (Outcome.REFUSED, Outcome.UNREPLICATED):
                about = {"request_id": event.request_id or None}
                what = (event.id, event.type, action.key, outcome)
                log.error("event %s (%s): follow-up on %s failed: %s", *what, extra=about)

    async def _apply(self, commands: list[Command]) -> list[int | str]:
        """Apply commands not on the partition's master (or no partition's: a sweep's), in order: one
        apply.lua call per master (on a single Redis, one call), the masters' at once. A call that
        finds its master no longer serves a key (the slot map moved) is made again one slot at a time,
        through the client's routing. Redis refusing a call for want of memory (before it wrote
        anything) gives REFUSED outcomes."""
        by_node: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            by_node.setdefault(self.worker.node_of(command.action.key), []).append(index)
        outcomes: list[int | str] = [Outcome.NOT_APPLIED] * len(commands)
        node_wide = isinstance(self.redis, RedisCluster)

        async def apply_on_node(indexes: list[int]) -> None:
            if await self._apply_call(commands, indexes, outcomes, node_wide):
                return
            if self.worker.replicated:  # a slot's call through redis-py could not WAIT on its own connection
                await self.worker.loop_client.refresh_slots()
                raise ClusterError("the slot map moved under a batch: it is applied again on the new map")
            log.info("the slot map moved under a batch: applying its %d commands slot by slot", len(indexes))
            by_slot: dict[int, list[int]] = {}
            for index in indexes:
                by_slot.setdefault(cluster_slot(commands[index].action.key), []).append(index)
            for slot_indexes in by_slot.values():
                await self._apply_call(commands, slot_indexes, outcomes, node_wide=False)

        await asyncio.gather(*(apply_on_node(indexes) for indexes in by_node.values()))
        return outcomes

    async def _apply_call(
        self, commands: list[Command], indexes: list[int], outcomes: list[int | str], node_wide: bool
    ) -> bool:
        """One apply.lua call for `commands[indexes]`, its outcomes set in `outcomes`. `node_wide`: the
        keys go by name in ARGV[1], only the first declared. False if it wrote nothing for ELSEWHERE."""
        call = ScriptCall(node_wide=node_wide)
        packed: dict[str, Any] = {"commands": [self._command(commands[index], call) for index in indexes]}
        wanted = self.settings.durability_replicas
        acked = wanted
        first_key = commands[indexes[0]].action.key
        try:
            if self.worker.replicated:
                packed["mark"] = call.target(keys.replication_mark(first_key))
                node = self.worker.node_of(first_key)
                found, acked = await self.worker.apply_replicated(node, call.routed_by(), call.args(packed))
            else:
                found = await self.worker.loop_client.script(APPLY_SCRIPT, call.routed_by(), call.args(packed))
        except OutOfMemoryError:
            found = [Outcome.REFUSED] * len(indexes)
        if found == Outcome.ELSEWHERE:
            return False
        for index, raw in zip(indexes, found, strict=True):
            outcome = outcome_of(raw)
            # Applied on the master only: not to be answered 2xx.
            outcomes[index] = (
                Outcome.UNREPLICATED if acked < wanted and outcome in (Outcome.APPLIED, Outcome.SUPERSEDED) else outcome
            )
        return True

    @staticmethod
    def _command(command: Command, call: ScriptCall) -> dict[str, Any]:
        """One command as apply_commands.lua takes it, its keys and arguments added to `call`."""
        action, seq, deadline_ms = command
        packed = {
            "command": action.command,
            "key": call.target(action.key),
            "version": call.target(keys.version(action.key)) if action.versioned else 0,
            "args": call.values(action.args),
            "expire_s": action.expire_s,
            "deadline_ms": deadline_ms,
            "seq": seq,
        }
        if action.expect:
            packed["expect"] = action.expect
        if action.limits is not None:
            packed["limits"] = asdict(action.limits)
        if action.extra_keys:
            packed["extra_keys"] = [call.target(key) for key in action.extra_keys]
        if action.run is not None:
            packed["run"] = {**asdict(action.run), "key": call.target(action.run.key)}
        return packed

    def _settlement(
        self, batch: Batch, here: list[Ready], applied: list[Applied], follow_ups: list[Ready]
    ) -> tuple[list[str], list[bytes | str]]:
        """settle.lua's keys and arguments (ScriptCall): the commands it applies, those applied before
        with their outcomes, each with its answers, then the follow-ups with none; the dead letters
        binary-safe in ARGV (a poison entry's fields need not be text)."""
        call = ScriptCall(self.key, self.dead_letters, node_wide=isinstance(self.redis, RedisCluster))
        stream = self.key.encode()
        commands = [{**self._command(command_of(ready), call), **self._answers(ready, call)} for ready in here]
        commands += ({"outcome": outcome, **self._answers(ready, call, outcome)} for ready, outcome in applied)
        commands += (self._command(command_of(ready, follow_up=True), call) for ready in follow_ups)
        packed = {
            "stream": 1,
            "dead_letters": 2,
            "group": self.group,
            "reply_ttl_s": self.settings.reply_ttl_s,
            "commands": commands,
            "failed": call.answer(STORAGE_ERROR),
            "replies": [
                {"reply_to": call.key(reply_to), "answer": call.answer(reply)} for reply_to, reply in batch.replies
            ],
            "ack": [entry_id.decode() for entry_id in batch.entry_ids],
            "letters": [call.values(dead_letter(entry, reason, stream)) for entry, reason in batch.dead],
        }
        return call.keys, call.args(packed)

    @staticmethod
    def _answers(ready: Ready, call: ScriptCall, outcome: int | str | None = None) -> dict[str, Any]:
        """A command's reply stream and the replies settle.lua chooses from; `outcome`, if known already."""
        action = ready.action
        refusals = dict(action.refusals)
        if outcome in WORKER_REPLIES:
            refusals[Outcome(outcome)] = WORKER_REPLIES[Outcome(outcome)]
        answers: dict[str, Any] = {
            "reply_to": call.key(ready.event.reply_to),
            "if_true": call.answer(action.if_true),
            "if_false": call.answer(action.if_false),
        }
        if refusals:
            answers["refusals"] = {str(int(code)): call.answer(reply) for code, reply in refusals.items()}
        return answers

    async def _refuse(self, batch: Batch, refused: list[Ready], applied: list[Applied]) -> None:
        """Settle a batch whose settle script Redis refused for want of memory: its own commands
        answered 503, unapplied, and those applied before answered as they came out.

        Redis refuses a script for memory before it runs or at its first write (past it, a script
        runs to its end), so nothing of it was written. Acknowledged, a refused command is never
        applied later, over a newer save of its caller's retry.
        """
        answered = [*applied, *(Applied(ready, Outcome.REFUSED) for ready in refused)]
        script_keys, args = self._settlement(batch, [], answered, [])
        await self.worker.loop_client.script(SETTLE_PAST_MAXMEMORY_SCRIPT, script_keys, args)
        log.warning("Redis is out of memory: %d commands answered 503, none applied", len(refused))
        self._count(batch, [one.ready for one in answered], [one.outcome for one in answered])
        self._count_dead(batch)
        self.worker.count_settled()

    def _count_dead(self, batch: Batch) -> None:
        for (entry_id, fields), reason in batch.dead:
            about = {"request_id": request_id_in(fields) or None}
            log.warning("dead-lettered %s from %s: %s", entry_id.decode(), self.key, reason, extra=about)
        self.stats.dead_lettered += len(batch.dead)

    async def _sweep(self) -> None:
        """Claim entries that other consumers left idle too long, then forget consumers long gone."""
        if self.number == 0 and self.worker.sweep:  # once per process, not per partition
            await self._apply_sweep()
        cursor = "0-0"
        while True:
            cursor_raw, claimed, _deleted = await self.redis.xautoclaim(
                self.key, self.group, self.consumer,
                min_idle_time=self.settings.claim_idle_ms, start_id=cursor, count=self.settings.batch_size,
            )  # fmt: skip
            if claimed:
                log.warning("claimed %d entries of %s left pending by other consumers", len(claimed), self.key)
                await self._process(claimed, await self._deliveries(claimed))
            cursor = cursor_raw.decode() if isinstance(cursor_raw, bytes) else cursor_raw
            if cursor == "0-0":
                break
        for consumer in await self.redis.xinfo_consumers(self.key, self.group):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] > self.settings.consumer_reap_ms:
                await self.redis.xgroup_delconsumer(self.key, self.group, name)

    async def _apply_sweep(self) -> None:
        """The service's sweep actions; one that fails waits for the next sweep."""
        sweep = self.worker.sweep
        try:
            outcomes = await self._apply([Command(action, "0-0", 0) for action in sweep])
        except (*REDIS_DOWN, ResponseError) as error:
            outcomes = [str(error)] * len(sweep)
        for action, outcome in zip(sweep, outcomes, strict=True):
            if isinstance(outcome, str) or outcome == Outcome.REFUSED:
                what = (action.command, action.key, outcome)
                log.warning("sweep's %s on %s failed (%s): the next sweep tries again", *what)

    async def _deliveries(self, claimed: list[Entry]) -> dict[bytes, int]:
        pending = await self.redis.xpending_range(
            self.key, self.group, min=claimed[0][0], max=claimed[-1][0],
            count=len(claimed), consumername=self.consumer,
        )  # fmt: skip
        return {cast(bytes, row["message_id"]): int(row["times_delivered"]) for row in pending}

    async def _leave_group(self) -> None:
        """Leave the group tidy; a consumer still holding entries stays so they can be claimed."""
        try:
            info = await self.redis.xpending_range(
                self.key, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not info:
                await self.redis.xgroup_delconsumer(self.key, self.group, self.consumer)
        except (*REDIS_DOWN, ResponseError) as error:
            log.warning("could not leave the group of %s cleanly: %s", self.key, error)


def dead_letter(entry: Entry, reason: str, stream: bytes) -> list[bytes]:
    """A dead letter's fields and values, one after the other: the entry's own and why it is here."""
    entry_id, fields = entry
    letter = {**fields, b"dead_reason": reason.encode(), b"dead_entry": entry_id, b"dead_stream": stream}
    return [part for field in letter.items() for part in field]


def outcome_of(raw: object) -> int | str:
    """One of apply_commands.lua's outcomes as Python sees it: a number, or an error's text."""
    return raw.decode() if isinstance(raw, bytes) else int(cast(int, raw))


def run_worker(
    stream: CommandStream,
    handlers: Callable[[Settings], Mapping[EventType, Handler]],
    settings: Settings,
    sweep: Callable[[Settings], Sequence[Action]] | None = None,
    prepare: Callable[[Settings], Prepare] | None = None,
) -> None:
    """Entry point shared by `python -m services.saves` and `python -m services.leaderboard`."""
    prepared = None if prepare is None else prepare(settings)
    worker = Worker(stream, handlers(settings), settings, () if sweep is None else sweep(settings), prepared)
    try:
        # uvloop, as the gateway runs on: with a few events a batch, the event loop is half a worker's CPU.
        uvloop.run(worker.run())
    except RedisNotReady as error:
        sys.exit(f"{stream.group}: {error}")
