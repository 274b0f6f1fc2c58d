"""The wire between the gateway and the workers: every stream, event type and reply.

A command travels as one stream entry (the envelope below) on the stream of the
service that owns it; the worker answers with one entry on the per-request reply
stream the envelope names, then acknowledges. Delivery is at least once, so
every command is idempotent, and nothing is applied after its deadline: the
caller has given up by then (see docs/protocol.md).
"""

from __future__ import annotations

import math
import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from shared import keys
from shared.logs import SANE_REQUEST_ID

VERSION = b"1"
EVENT_ID = re.compile(r"[0-9a-f]{32}")
# A document version: the stream id of the command that last wrote it ("0-0": written before versions).
VERSION_ID = r"[0-9]{1,20}-[0-9]{1,20}"
ANY_VERSION, NO_DOCUMENT = "*", "!"
# A command's precondition (`expect`): the document exists, or does not, or has one of these versions.
EXPECT = re.compile(rf"\*|!|{VERSION_ID}(?: {VERSION_ID}){{0,31}}")


class EventType(StrEnum):
    PLAYER_CREATE = "player.create"
    PLAYER_UPDATE = "player.update"
    GAME_CREATE = "game.create"
    GAME_UPDATE = "game.update"
    PLAYER_MERGE = "player.merge"
    GAME_MERGE = "game.merge"
    PLAYER_DELETE = "player.delete"
    GAME_DELETE = "game.delete"
    SCORE_SUBMIT = "score.submit"
    RUN_START = "run.start"
    ACCOUNT_ERASE = "account.erase"
    # An operator's (services/gateway/admin.py); `session` is the player the command is about.
    BOARD_BAN = "board.ban"
    BOARD_UNBAN = "board.unban"
    BOARD_REMOVE = "board.remove"


@dataclass(frozen=True)
class CommandStream:
    """A command stream (one per partition), the consumer group that works it, and the events it carries."""

    name: str
    group: str
    events: frozenset[EventType]

    def key(self, partition: int) -> str:
        return keys.command_stream(self.name, partition)


SAVE_EVENTS = frozenset({
    EventType.PLAYER_CREATE, EventType.PLAYER_UPDATE, EventType.PLAYER_MERGE, EventType.PLAYER_DELETE,
    EventType.GAME_CREATE, EventType.GAME_UPDATE, EventType.GAME_MERGE, EventType.GAME_DELETE,
})  # fmt: skip
SAVES = CommandStream("saves", keys.SAVES_GROUP, SAVE_EVENTS)
# An account's erase goes with the scores: most of what it removes is board entries (services/leaderboard).
# An operator's ban, unban and removal too: they are about board entries.
SCORE_EVENTS = frozenset({
    EventType.SCORE_SUBMIT, EventType.RUN_START, EventType.ACCOUNT_ERASE,
    EventType.BOARD_BAN, EventType.BOARD_UNBAN, EventType.BOARD_REMOVE,
})  # fmt: skip
SCORES = CommandStream("scores", keys.LEADERBOARD_GROUP, SCORE_EVENTS)
COMMAND_STREAMS = (SAVES, SCORES)
STREAM_OF = {event: stream for stream in COMMAND_STREAMS for event in stream.events}


# Live tops (docs/protocol.md): after each batch, a leaderboard worker appends a board's top LIVE_TOP_SIZE
# to the board's stream keys.live_top(board), one entry whose field `top` is the board's
# `ZRANGE 0 9 REV WITHSCORES` as a JSON array of strings (member, score, member, score, ...), and only
# when it differs from the entry before. Every gateway process reads them and fans them out.
LIVE_TOP_SIZE = 10
LIVE_TOP_FIELD = b"top"
LIVE_STREAM_MAXLEN = 16  # the newest entry is all a reader needs; a few more cost nothing


def live_top_rows(encoded: bytes) -> list[tuple[str, int | float]]:
    """A live-top entry's `top` field as (member, score) rows, highest first."""
    flat: list[str] = orjson.loads(encoded)
    return list(zip(flat[::2], scores_of(flat[1::2]), strict=True))


def scores_of(written: Sequence[bytes | str]) -> list[int | float]:
    """Scores as Redis writes them, as numbers in the API's shape (as_number). Redis writes a whole
    score as its digits, which int() reads at once and exactly (no score is beyond 2^53: Settings):
    a board read's rows cost half as much as through float() and as_number."""
    try:
        return list(map(int, written))
    except ValueError:  # a fraction or an exponent
        return [as_number(float(score)) for score in written]


def as_number(score: float) -> int | float:
    """1200, not 1200.0: the shape a JavaScript client of the seed's server saw."""
    return int(score) if score.is_integer() else score


def owner_of(member: str) -> tuple[str, str]:
    """A board member `{name}-{id}` as its name and the id of the player whose entry it is ("" if it has
    no `-`). The one rule, here and in apply_commands.lua's owner_of (tests/test_boards.py holds them
    to it): the name has no `-`, so the first one ends it."""
    name, _, owner = member.partition("-")
    return name, owner


# A verified run's token (POST /api/leaderboard/{key}/runs): `{map}.{secret}`, the secret 128 random bits
# in hex. The map tells which board a token was issued for; the secret names its key (keys.run).
RUN_SECRET = re.compile(r"[0-9a-f]{32}")


def new_run_token(map_name: str) -> str:
    return f"{map_name}.{os.urandom(16).hex()}"


def run_token_parts(token: str) -> tuple[str, str] | None:
    """A run token's map and secret; None for what no server issued (truncated, forged in shape)."""
    map_name, _, secret = token.rpartition(".")
    return (map_name, secret) if map_name and RUN_SECRET.fullmatch(secret) else None


def partition_of(session_id: str, partitions: int) -> int:
    """The partition of every command of one session: one player's commands stay in order."""
    return zlib.crc32(session_id.encode()) % partitions


class PoisonEvent(ValueError):
    """An entry no handler can apply however often it is retried: it goes to the dead-letter stream."""


# Not frozen, though never changed: one is built per command, and a frozen dataclass's __init__ costs
# more (an object.__setattr__ a field; docs/benchmarks.md, "Instructions per request").
@dataclass(slots=True)
class Event:
    id: str
    type: EventType
    session: str
    payload: Any
    reply_to: str
    deadline_ms: int
    # The HTTP request's X-Request-Id, for the worker's log lines; optional, so older entries still decode.
    request_id: str = ""
    # The caller's precondition on the document (If-Match, If-None-Match), checked atomically with the
    # write: ANY_VERSION, NO_DOCUMENT, or versions separated by spaces. Empty: none, last write wins.
    expect: str = ""
    # The stream entry id it was read from ("" before it is published): Redis's clock at admission.
    entry_id: str = ""

    @classmethod
    def new(
        cls,
        type: EventType,
        session: str,
        payload: Any,
        timeout_ms: int,
        partition: int,
        request_id: str = "",
        expect: str = "",
    ) -> Event:
        event_id = os.urandom(16).hex()  # 128 random bits, cheaper than uuid4's 122 (docs/benchmarks.md)
        reply_to = keys.reply(partition, event_id)
        return cls(event_id, type, session, payload, reply_to, now_ms() + timeout_ms, request_id, expect)

    @property
    def admitted_ms(self) -> int:
        """When Redis admitted it (its entry id's time), the same for every worker that reads it; now,
        for an event not read from a stream."""
        return int(self.entry_id.partition("-")[0]) if self.entry_id else now_ms()

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
            **({b"request_id": self.request_id.encode()} if self.request_id else {}),
            **({b"expect": self.expect.encode()} if self.expect else {}),
        }

    @classmethod
    def decode(cls, fields: dict[bytes, bytes], partition: int, entry_id: bytes = b"") -> Event:
        """The event of entry `entry_id` read from `partition`'s stream; its reply stream must be that partition's."""
        try:
            if fields[b"v"] != VERSION:
                raise PoisonEvent(f"unsupported envelope version {fields[b'v']!r}")
            event_id, reply_to = fields[b"id"].decode(), fields[b"reply_to"].decode()
            if not EVENT_ID.fullmatch(event_id):
                raise PoisonEvent(f"event id {event_id[:40]!r} is not 32 hex digits")
            if reply_to != keys.reply(partition, event_id):
                raise PoisonEvent(f"reply_to {reply_to[:80]!r} is not its reply stream in partition {partition}")
            expect = fields.get(b"expect", b"").decode()
            if expect and not EXPECT.fullmatch(expect):
                raise PoisonEvent(f"precondition {expect[:80]!r} is not one a gateway would send")
            return cls(
                id=event_id,
                type=EventType(fields[b"type"].decode()),
                session=fields[b"session"].decode(),
                payload=orjson.loads(fields[b"payload"]),
                reply_to=reply_to,
                deadline_ms=int(fields[b"deadline"]),
                request_id=request_id_in(fields),
                expect=expect,
                entry_id=entry_id.decode(),
            )
        except KeyError as missing:
            raise PoisonEvent(f"missing field {missing.args[0].decode()!r}") from None
        except (ValueError, UnicodeDecodeError) as error:
            if isinstance(error, PoisonEvent):
                raise
            raise PoisonEvent(f"malformed envelope: {error}") from None


def request_id_in(fields: dict[bytes, bytes]) -> str:
    """An entry's request id; none if absent (an older gateway's) or not one a gateway would send."""
    request_id = fields.get(b"request_id", b"")
    return request_id.decode() if SANE_REQUEST_ID.fullmatch(request_id) else ""


# Not frozen, for the reason Event is not (above).
@dataclass(slots=True)
class Reply:
    """What the gateway answers over HTTP: a status code and a JSON body.

    A reply stream holds one entry, fields `status` and `body`, and expires after REPLY_TTL_S.
    """

    status: int
    body: Any
    # The version a write stored (its command's stream entry id); the gateway sets it, for the ETag.
    version: str = ""

    def wire(self) -> tuple[str, str]:
        """Status and body as a reply stream entry holds them (written by shared/settle.lua)."""
        return str(self.status), orjson.dumps(self.body).decode()

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> Reply:
        return cls(int(fields[b"status"]), orjson.loads(fields[b"body"]))

    @classmethod
    def message(cls, status: int, message: str) -> Reply:
        return cls(status, {"status": status, "message": message})


class Outcome(IntEnum):
    """What applying one command came to: the codes shared/apply_commands.lua returns (it is given
    them as its first lines, LUA_OUTCOMES) and the worker's own. An outcome's reply is chosen in one
    place, shared/settle.lua: APPLIED and SUPERSEDED answer the action's `if_true`, NOT_APPLIED its
    `if_false`, EXPIRED nothing (the caller has had its 504), an error's text a 500, and the others
    the reply the action or the worker names for them (`refusals`, WORKER_REPLIES)."""

    APPLIED = 1  # OK, or a non-zero count
    NOT_APPLIED = 0  # nil or zero: JSON.SET ... XX on a missing key, ZADD GT CH that changed nothing
    EXPIRED = -1  # past its deadline on Redis's clock: not applied
    SUPERSEDED = -2  # this command, or a newer one of the same player, was applied already
    REFUSED = -3  # the worker's: Redis refused the call for want of memory before it wrote anything
    PRECONDITION_FAILED = -4  # the caller's If-Match / If-None-Match does not hold; nothing written
    OVER_LIMITS = -5  # the written document broke its limits, and was restored
    ELSEWHERE = -6  # a whole call's: a key it names is not on the master it was sent to; nothing written
    UNREPLICATED = -7  # the worker's: applied on its master, not confirmed by a replica in time
    # A verified score's run refuses it (apply_commands.lua's run_refusal); nothing written.
    RUN_FOREIGN = -8  # another player's run
    RUN_USED = -9  # a run that carried a score already
    RUN_UNKNOWN = -10  # no such run, or expired
    RUN_TOO_SHORT = -11  # shorter than the board's RUN_MIN_S
    RUN_TOO_HIGH = -12  # a score above what the run's time allows
    BANNED = -13  # a score of a player an operator banned from the board; nothing written


LUA_OUTCOMES = "".join(f"local {outcome.name} = {outcome.value}\n" for outcome in Outcome)
# The order of ties on a board (API.md, v3), for every script that ranks: the gateway's reads and the
# workers' live tops.
LUA_TIES = (Path(__file__).parent / "ties.lua").read_text()

# The worker's answers where a command's own action has none. A refused command, acknowledged with its
# 503, is never applied later, over a newer save of its caller's retry.
STORAGE_ERROR = Reply.message(500, "The save could not be stored")
DEAD_LETTERED = Reply.message(500, "The request could not be processed")
# A banned player's score, refused by the leaderboard worker (BANNED) or, with seasons, by the gateway first.
BANNED_FROM_BOARDS = Reply.message(403, "This player is banned from the leaderboards")
WORKER_REPLIES = {
    Outcome.REFUSED: Reply.message(503, "Storage is full; try again shortly"),
    Outcome.UNREPLICATED: Reply.message(503, "The write was not confirmed by a replica in time; try again shortly"),
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_finite_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trim_id(retention_ms: int) -> str:
    """The `XADD ... MINID` that trims a command stream of entries past every deadline."""
    return f"{max(now_ms() - retention_ms, 0)}-0"
