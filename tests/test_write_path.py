"""The write path's guarantees where apply (apply.lua) and settle (settle.lua) are two steps.

On a Redis Cluster a command's target and its stream live in different slots, so a worker
applies, then answers and acknowledges (on a single Redis, settle.lua applies them itself, in one
step). These tests drive the worker's own code (in this process, against a real Redis) through
the cluster's two steps, and what a crash between them leaves behind.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from services.saves.handlers import handlers
from shared import keys
from shared.protocol import SAVES, Event, EventType, Outcome, Reply
from shared.settings import Settings
from shared.worker import Partition, Worker, command_of, stream_entries
from tests.conftest import StackFactory


@pytest.fixture
def redis_url(make_stack: StackFactory) -> str:
    """A Redis of the test's own, with no worker on it: these tests are the workers."""
    return make_stack(saves=0, leaderboard=0).redis_url


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, session_secret=os.urandom(24).hex())


def save(session: str, level: int, timeout_ms: int = 30_000) -> Event:
    return Event.new(EventType.PLAYER_CREATE, session, {"id": session, "level": level}, timeout_ms, 0)


def document(db: redis.Redis, session: str) -> Any:
    raw = db.execute_command("JSON.GET", keys.player(session))
    return None if raw is None else orjson.loads(raw)


def reply_of(db: redis.Redis, event: Event) -> Reply | None:
    answer = db.xread({event.reply_to: "0-0"}, count=1)
    entries = stream_entries(answer)
    return Reply.decode(entries[0][1]) if entries else None


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_command_applied_before_a_crash_is_answered_not_applied_again_over_a_newer_save(
    redis_url: str, db: redis.Redis
) -> None:
    """Worker A applies an old save and dies before settling it; B applies a newer one; A's entry,
    read again, finds a newer version and is only answered and acknowledged."""
    session = Event.new(EventType.PLAYER_CREATE, "", None, 0, 0).id

    async def scenario() -> tuple[list[int | str], list[int | str]]:
        a = Worker(SAVES, handlers(settings(redis_url)), settings(redis_url))
        await a.connect()
        first = Partition(a, 0)
        await first._ensure_group()
        await first._read(0)  # an empty backlog: from now on it reads new entries
        old = save(session, 1)
        await a.redis.xadd(SAVES.key(0), old.encode())  # type: ignore[arg-type]
        (batch,) = first._prepare(await first._read(100))
        applied = await first._apply([*map(command_of, batch.ready)])  # ...and the process dies here: no settle
        b = Worker(SAVES, handlers(settings(redis_url)), settings(redis_url))
        await b.connect()
        second = Partition(b, 0)
        await second._read(0)
        newer = save(session, 2)
        await b.redis.xadd(SAVES.key(0), newer.encode())  # type: ignore[arg-type]
        await second._process(await second._read(100))
        assert document(db, session) == {"id": session, "level": 2}
        first._read_backlog = True  # A comes back (a lost connection): its own pending entries first
        (again,) = first._prepare(await first._read(0))
        outcomes = await first._apply([*map(command_of, again.ready)])
        await first._settle(again)
        await a.aclose()
        await b.aclose()
        return applied, outcomes

    applied, outcomes = run(scenario())
    assert applied == [Outcome.APPLIED]
    assert outcomes == [Outcome.SUPERSEDED]
    assert document(db, session) == {"id": session, "level": 2}  # the newer save stands
    groups = db.xinfo_groups(SAVES.key(0))
    assert groups[0]["pending"] == 0  # and the old entry is acknowledged


def test_a_command_past_its_deadline_on_redis_clock_is_not_applied(redis_url: str, db: redis.Redis) -> None:
    """The deadline is checked inside the write, on Redis's clock, whatever the worker's clock says."""
    session = Event.new(EventType.PLAYER_CREATE, "", None, 0, 0).id

    async def scenario() -> list[int | str]:
        worker = Worker(SAVES, handlers(settings(redis_url)), settings(redis_url))
        await worker.connect()
        partition = Partition(worker, 0)
        await partition._ensure_group()
        await partition._read(0)
        late = save(session, 1, timeout_ms=200)
        await worker.redis.xadd(SAVES.key(0), late.encode())  # type: ignore[arg-type]
        (batch,) = partition._prepare(await partition._read(100))  # prepared in time...
        await asyncio.sleep(0.4)  # ...applied after the deadline (a slow worker, a paused process)
        outcomes = await partition._apply([*map(command_of, batch.ready)])
        await partition._settle(batch)
        await worker.aclose()
        return outcomes

    assert run(scenario()) == [Outcome.EXPIRED]
    assert document(db, session) is None
