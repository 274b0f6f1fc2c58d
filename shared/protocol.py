"""The wire between the gateway and the workers: every stream, event type and reply.

A command travels as one stream entry (the envelope below) on the stream of the
service that owns it; the worker answers with one entry on the per-request reply
stream the envelope names, then acknowledges. Delivery is at least once, so
every command is idempotent, and nothing is applied after its deadline: the
caller has given up by then (see docs/protocol.md).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

import orjson

from shared import keys
from shared.pipelined import PipelinedRedis

VERSION = b"1"


class EventType(StrEnum):
    PLAYER_CREATE = "player.create"
    PLAYER_UPDATE = "player.update"
    GAME_CREATE = "game.create"
    GAME_UPDATE = "game.update"
    SCORE_SUBMIT = "score.submit"


@dataclass(frozen=True)
class Route:
    """A command stream, the consumer group that works it, and the events it carries."""

    stream: str
    group: str
    events: frozenset[EventType]


SAVES = Route(
    keys.SAVES_STREAM,
    keys.SAVES_GROUP,
    frozenset({EventType.PLAYER_CREATE, EventType.PLAYER_UPDATE, EventType.GAME_CREATE, EventType.GAME_UPDATE}),
)
SCORES = Route(keys.SCORES_STREAM, keys.LEADERBOARD_GROUP, frozenset({EventType.SCORE_SUBMIT}))
ROUTES = (SAVES, SCORES)
ROUTE_OF = {event: route for route in ROUTES for event in route.events}


class PoisonEvent(ValueError):
    """An entry no handler can apply however often it is retried: it goes to the dead-letter stream."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: EventType
    session: str
    payload: Any
    reply_to: str
    deadline_ms: int

    @classmethod
    def new(cls, type: EventType, session: str, payload: Any, timeout_ms: int) -> Event:
        event_id = uuid.uuid4().hex
        return cls(event_id, type, session, payload, keys.reply(event_id), now_ms() + timeout_ms)

    def expired(self, at_ms: int | None = None) -> bool:
        return (now_ms() if at_ms is None else at_ms) > self.deadline_ms

    def encode(self) -> dict[bytes, bytes]:
        return {
            b"v": VERSION,
            b"id": self.id.encode(),
            b"type": self.type.value.encode(),
            b"session": self.session.encode(),
            b"reply_to": self.reply_to.encode(),
            b"deadline": str(self.deadline_ms).encode(),
            b"payload": orjson.dumps(self.payload),
        }

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> Event:
        try:
            if fields[b"v"] != VERSION:
                raise PoisonEvent(f"unsupported envelope version {fields[b'v']!r}")
            reply_to = fields[b"reply_to"].decode()
            if not reply_to.startswith(keys.REPLY_PREFIX):
                raise PoisonEvent(f"reply_to {reply_to!r} is not a reply stream")
            return cls(
                id=fields[b"id"].decode(),
                type=EventType(fields[b"type"].decode()),
                session=fields[b"session"].decode(),
                payload=orjson.loads(fields[b"payload"]),
                reply_to=reply_to,
                deadline_ms=int(fields[b"deadline"]),
            )
        except KeyError as missing:
            raise PoisonEvent(f"missing field {missing.args[0].decode()!r}") from None
        except (ValueError, UnicodeDecodeError) as error:
            if isinstance(error, PoisonEvent):
                raise
            raise PoisonEvent(f"malformed envelope: {error}") from None


@dataclass(frozen=True, slots=True)
class Reply:
    """What the gateway answers over HTTP: a status code and a JSON body.

    A reply stream holds one entry, fields `status` and `body`, and expires after REPLY_TTL_S.
    """

    status: int
    body: Any

    def wire(self) -> tuple[str, str]:
        """Status and body as a reply stream entry holds them (written by shared/settle.lua)."""
        return str(self.status), orjson.dumps(self.body).decode()

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> Reply:
        return cls(int(fields[b"status"]), orjson.loads(fields[b"body"]))

    @classmethod
    def message(cls, status: int, message: str) -> Reply:
        return cls(status, {"status": status, "message": message})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_finite_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trim_id(retention_ms: int) -> str:
    """The `XADD ... MINID` that trims a command stream of entries past every deadline."""
    return f"{max(now_ms() - retention_ms, 0)}-0"


async def wait_for_reply(redis: PipelinedRedis, event: Event, wait_ms: int) -> Reply | None:
    """Block on the command's reply stream; None if no reply came in time.

    Read from the start of the stream, so a reply written before the read blocks is not missed. A
    wait that ends empty looks once more, without blocking, down the shared connection: the reply may
    have come while every blocking connection was taken (PipelinedRedis's `max_blocking`).
    """
    key = event.reply_to
    answer = await redis.blocking(wait_ms, lambda ms: ("XREAD", "COUNT", 1, "BLOCK", ms, "STREAMS", key, "0-0"))
    if not answer:
        answer = await redis.execute("XREAD", "COUNT", 1, "STREAMS", key, "0-0")
    if not answer:
        return None
    [[_stream, [[_entry_id, fields]]]] = answer  # RESP2: one stream, one entry, fields flat
    return Reply.decode(dict(zip(fields[::2], fields[1::2], strict=True)))


Entry = tuple[bytes, dict[bytes, bytes]]


def stream_entries(answer: Any) -> list[Entry]:
    """The entries of a one-stream XREAD / XREADGROUP answer, as redis-py gives it over RESP3."""
    if not answer:
        return []
    (batch,) = answer.values()
    entries: list[Entry] = batch[0] if batch else []
    return entries
