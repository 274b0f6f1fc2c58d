"""The one consumer loop both workers run.

Lifecycle: connect and check Redis, create the group and indexes, then loop:
read a batch, and settle it (apply, reply, dead-letter, acknowledge) in one
atomic script, shared/settle.lua, while reading and preparing the next one.
Now and then, claim what dead consumers left pending and forget consumers long
gone. A Redis that is unreachable, busy (a script past busy-reply-threshold) or
out of memory is waited out: what this consumer holds stays pending and is read
again. SIGTERM (or Ctrl-C) stops the reading; the batch in hand is settled
before the process exits.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from shared import keys
from shared.connection import REDIS_DOWN, RedisNotReady, connect, ensure_indexes, redact, unavailable, wait_until_ready
from shared.protocol import CommandStream, Event, EventType, PoisonEvent, Reply, now_ms
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


@dataclass(frozen=True, slots=True)
class Action:
    """A handler's verdict on one event: one Redis command on one key, and the reply for each outcome.

    A true result is OK or a non-zero count; a false one is nil or zero (JSON.SET ... XX on a
    missing key, ZADD GT CH that changed nothing). A non-zero `expire_s` sets the key's TTL after a
    true result.
    """

    command: str
    key: str
    args: tuple[str, ...]
    if_true: Reply
    if_false: Reply
    expire_s: int = 0


Handler = Callable[[Event], Action]
"""Pure: validates the event and says what to do; raises PoisonEvent when it can't be applied."""

SETTLE_SCRIPT = (Path(__file__).parent / "settle.lua").read_text()
# The same script let past maxmemory, for a batch with no command left to apply (Worker._refuse).
SETTLE_PAST_MAXMEMORY_SCRIPT = "#!lua flags=allow-oom\n" + SETTLE_SCRIPT
STORAGE_ERROR = Reply.message(500, "The save could not be stored")
STORAGE_FULL = Reply.message(503, "Storage is full; try again shortly")
DEAD_LETTERED = Reply.message(500, "The request could not be processed")


@dataclass(slots=True)
class Batch:
    """Entries read together, sorted into what to apply, what only gets a reply, and what is poison."""

    entry_ids: list[bytes]
    ready: list[tuple[Event, Action]] = field(default_factory=list)
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    dead: list[tuple[Entry, str]] = field(default_factory=list)
    # What _pack made of the above: the settle script's keys and arguments.
    script: tuple[list[str | bytes], list[bytes | str | int]] = field(default_factory=lambda: ([], []))


@dataclass(slots=True)
class Stats:
    applied: int = 0
    expired: int = 0
    dead_lettered: int = 0
    refused: int = 0  # answered 503, unapplied: Redis was out of memory


class Worker:
    def __init__(self, stream: CommandStream, handlers: Mapping[EventType, Handler], settings: Settings) -> None:
        self.stream = stream
        self.handlers = handlers
        self.settings = settings
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis: Redis = connect(settings.redis_url, max_connections=4)
        self._settle_script = self.redis.register_script(SETTLE_SCRIPT)
        self._settle_past_maxmemory = self.redis.register_script(SETTLE_PAST_MAXMEMORY_SCRIPT)
        self.stats = Stats()
        self._stopping = asyncio.Event()
        self._read_backlog = True  # our own pending entries first: after a start or a lost connection
        self._group_ready = False  # the group and the indexes exist: checked at start and after a NOGROUP

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the batch in hand")
            self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await wait_until_ready(self.redis, self.settings.redis_url)
        log.info(
            "consumer %s of group %r on %s at %s",
            self.consumer, self.stream.group, self.stream.key, redact(self.settings.redis_url),
        )  # fmt: skip
        gc.freeze()  # start-up's objects live as long as the process: keep them out of every collection
        sweep_every = self.settings.claim_idle_ms / 2000
        next_sweep = 0.0
        in_hand: list[Batch] | None = None  # read and prepared, not yet settled
        while not self._stopping.is_set():
            try:
                if not self._group_ready:
                    await self._ensure_group()
                    await ensure_indexes(self.redis.execute_command)
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
            except (*REDIS_DOWN, ResponseError) as error:
                reason = unavailable(error)
                if reason is None and "NOGROUP" in str(error):
                    log.warning("consumer group vanished (Redis emptied?); recreating it")
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
            except (*REDIS_DOWN, ResponseError) as error:
                if unavailable(error) is None:
                    raise
                log.warning("could not settle the last batch (%s); it stays pending for another consumer", error)
        await self._leave_group()
        await self.redis.aclose()
        stats = self.stats
        log.info(
            "stopped: applied %d, expired %d, dead-lettered %d, refused %d",
            stats.applied, stats.expired, stats.dead_lettered, stats.refused,
        )  # fmt: skip

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream.key, self.stream.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read(self, block_ms: int) -> list[Entry]:
        """New entries, or our own pending ones while a backlog remains."""
        start = "0" if self._read_backlog else ">"
        answer = await self.redis.xreadgroup(
            self.stream.group,
            self.consumer,
            {self.stream.key: start},
            count=self.settings.batch_size,
            block=None if self._read_backlog else block_ms,
        )
        entries = stream_entries(answer)
        if self._read_backlog and not entries:
            self._read_backlog = False
        return entries

    async def _step(self, in_hand: list[Batch] | None, block_ms: int) -> list[Batch]:
        """Settle the batch in hand while reading and preparing the next one.

        The read goes out first, so Redis answers it before it runs the settle script, and this
        process prepares the next batch while Redis applies the one before. Batches still settle
        one after another, in order; reading ahead is safe because `>` only hands out new entries.
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
        settled by a script of its own: Redis runs a script alone, and one of 200 of the largest saves
        kept every other client waiting 140 ms (over a second while names were unbounded)."""
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
                event = Event.decode(fields)
            except PoisonEvent as error:
                batch.dead.append((entry, str(error)))
                continue
            delivered = (deliveries or {}).get(entry_id, 1)
            if delivered > self.settings.max_deliveries:
                batch.dead.append((entry, f"delivered {delivered} times"))
                batch.replies.append((event.reply_to, DEAD_LETTERED))
            elif event.expired(at):
                if delivered > 1:  # abandoned by a consumer that died holding it
                    batch.dead.append((entry, f"abandoned past its deadline after {delivered} deliveries"))
                else:
                    self.stats.expired += 1
            else:
                try:
                    batch.ready.append((event, self._action(event)))
                except PoisonEvent as error:
                    batch.dead.append((entry, str(error)))
                    batch.replies.append((event.reply_to, DEAD_LETTERED))
        if entries:
            self._pack(batch)
        return batch

    def _action(self, event: Event) -> Action:
        handler = self.handlers.get(event.type)
        if handler is None:
            raise PoisonEvent(f"event type {event.type} does not belong on {self.stream.key}")
        return handler(event)

    def _pack(self, batch: Batch) -> None:
        """The settle script's keys and arguments, made while Redis is still busy with the batch before.

        Every key goes in KEYS (Redis must know what a script touches); the batch, one JSON argument
        (it packs faster than thousands), names each key by its index there. Dead letters follow as
        binary-safe arguments: a poison entry's fields need not be text.
        """
        script_keys: list[str | bytes] = [self.stream.key, keys.DEAD_LETTER_STREAM]
        letters = [
            {
                **fields,
                b"dead_reason": reason.encode(),
                b"dead_entry": entry_id,
                b"dead_stream": self.stream.key.encode(),
            }
            for (entry_id, fields), reason in batch.dead
        ]

        def key_index(key: str) -> int:
            script_keys.append(key)
            return len(script_keys)  # Lua counts from 1

        def answer(reply: Reply) -> dict[str, str]:
            status, body = reply.wire()
            return {"status": status, "body": body}

        packed = {
            "stream": 1,
            "dead_letters": 2,
            "group": self.stream.group,
            "reply_ttl_s": self.settings.reply_ttl_s,
            "failed": answer(STORAGE_ERROR),
            "commands": [
                {
                    "command": action.command,
                    "key": key_index(action.key),
                    "args": action.args,
                    "expire_s": action.expire_s,
                    "reply_to": key_index(event.reply_to),
                    "if_true": answer(action.if_true),
                    "if_false": answer(action.if_false),
                }
                for event, action in batch.ready
            ],
            "replies": [{"reply_to": key_index(reply_to), **answer(reply)} for reply_to, reply in batch.replies],
            "ack": [entry_id.decode() for entry_id in batch.entry_ids],
            "letters": [2 * len(letter) for letter in letters],
        }
        args: list[bytes | str | int] = [orjson.dumps(packed)]
        for letter in letters:
            for name, value in letter.items():
                args += (name, value)
        batch.script = (script_keys, args)

    async def _settle_all(self, batches: list[Batch]) -> None:
        for batch in batches:
            await self._settle(batch)

    async def _settle(self, batch: Batch) -> None:
        """Apply, reply, dead-letter and acknowledge in one atomic round trip (shared/settle.lua)."""
        if not batch.entry_ids:
            return
        script_keys, args = batch.script
        try:
            outcomes = await self._settle_script(keys=script_keys, args=args)
        except OutOfMemoryError:
            await self._refuse(batch)
            return
        for (event, _action), outcome in zip(batch.ready, outcomes, strict=True):
            if isinstance(outcome, bytes):
                log.error("event %s (%s) failed in Redis: %s", event.id, event.type, outcome.decode())
            else:
                self.stats.applied += 1
        self._count_dead(batch)

    async def _refuse(self, batch: Batch) -> None:
        """Settle a batch Redis refused for want of memory: every command answered 503, none applied.

        Redis refuses for memory only a script's first write (past it, a script runs to its end), and
        settle.lua gives up at that refusal: nothing of the batch was written. What is left (replies,
        dead letters, acknowledgements) is small and goes through the script let past maxmemory.
        Acknowledged, a refused command is never applied later, over a newer save of its caller's retry.
        """
        replies = [(event.reply_to, STORAGE_FULL) for event, _ in batch.ready] + batch.replies
        refused = Batch(batch.entry_ids, replies=replies, dead=batch.dead)
        self._pack(refused)
        script_keys, args = refused.script
        await self._settle_past_maxmemory(keys=script_keys, args=args)
        log.warning("Redis is out of memory: %d commands answered 503, none applied", len(batch.ready))
        self.stats.refused += len(batch.ready)
        self._count_dead(batch)

    def _count_dead(self, batch: Batch) -> None:
        for (entry_id, _fields), reason in batch.dead:
            log.warning("dead-lettered %s from %s: %s", entry_id.decode(), self.stream.key, reason)
        self.stats.dead_lettered += len(batch.dead)

    async def _sweep(self) -> None:
        """Claim entries that other consumers left idle too long, then forget consumers long gone."""
        cursor = "0-0"
        while True:
            cursor_raw, claimed, _deleted = await self.redis.xautoclaim(
                self.stream.key, self.stream.group, self.consumer,
                min_idle_time=self.settings.claim_idle_ms, start_id=cursor, count=self.settings.batch_size,
            )  # fmt: skip
            if claimed:
                log.warning("claimed %d entries left pending by other consumers", len(claimed))
                await self._process(claimed, await self._deliveries(claimed))
            cursor = cursor_raw.decode() if isinstance(cursor_raw, bytes) else cursor_raw
            if cursor == "0-0":
                break
        for consumer in await self.redis.xinfo_consumers(self.stream.key, self.stream.group):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] > self.settings.consumer_reap_ms:
                await self.redis.xgroup_delconsumer(self.stream.key, self.stream.group, name)

    async def _deliveries(self, claimed: list[Entry]) -> dict[bytes, int]:
        pending = await self.redis.xpending_range(
            self.stream.key, self.stream.group, min=claimed[0][0], max=claimed[-1][0],
            count=len(claimed), consumername=self.consumer,
        )  # fmt: skip
        return {cast(bytes, row["message_id"]): int(row["times_delivered"]) for row in pending}

    async def _leave_group(self) -> None:
        """Leave the group tidy; a consumer still holding entries stays so they can be claimed."""
        try:
            info = await self.redis.xpending_range(
                self.stream.key, self.stream.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not info:
                await self.redis.xgroup_delconsumer(self.stream.key, self.stream.group, self.consumer)
        except (*REDIS_DOWN, ResponseError) as error:
            log.warning("could not leave the group cleanly: %s", error)


def run_worker(
    stream: CommandStream, handlers: Callable[[Settings], Mapping[EventType, Handler]], settings: Settings
) -> None:
    """Entry point shared by `python -m services.saves` and `python -m services.leaderboard`."""
    worker = Worker(stream, handlers(settings), settings)
    try:
        asyncio.run(worker.run())
    except RedisNotReady as error:
        sys.exit(f"{stream.group}: {error}")
