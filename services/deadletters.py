"""Dead letters: what they are, and the rules for replaying and dropping one, for every caller.

`make deadletters` (devtools/deadletters.py) and the operators' console (services/gateway/admin.py)
both call these functions, each through its own Redis client behind `LetterStore`, so the replay
safety rule is written once.

A worker dead-letters an entry it cannot apply as the entry's own fields plus `dead_reason`,
`dead_entry` and `dead_stream` (shared/worker.py). A replay publishes the command again as a fresh
event (new id, deadline and reply stream) on the stream it came from and waits for the worker's
reply, as the gateway does. The safety rule: a score only ever raises its board (`ZADD GT`), so it
replays freely; a save replaces its whole document, which may be newer than the dead letter, so it
is refused while that document exists unless forced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
from redis.exceptions import ResponseError

from services.leaderboard import handlers as leaderboard
from services.saves import handlers as saves
from shared import keys
from shared.protocol import SAVES, SCORES, CommandStream, Event, EventType, PoisonEvent, Reply, now_ms, trim_id
from shared.settings import Settings
from shared.worker import Entry, Handler

DEAD_FIELDS = (b"dead_reason", b"dead_entry", b"dead_stream")
# Each command stream with the handlers its worker runs: a replay is checked as the worker checks it.
HANDLERS: dict[CommandStream, Callable[[Settings], Mapping[EventType, Handler]]] = {
    SAVES: saves.handlers,
    SCORES: leaderboard.handlers,
}
REPLY_GRACE_MS = 1000  # past the deadline: a reply written right at it is still read


class LetterStore(Protocol):
    """The Redis commands the rules need, as each caller's client sends them."""

    async def stream_newest(self, stream: str, count: int) -> list[Entry]: ...
    async def stream_entry(self, stream: str, entry_id: str) -> Entry | None: ...
    async def stream_length(self, stream: str) -> int: ...
    async def exists(self, key: str) -> bool: ...
    async def publish(self, stream: str, fields: Mapping[bytes, bytes], min_id: str) -> None: ...
    async def wait_for_reply(self, reply_to: str, wait_ms: int) -> Reply | None: ...
    async def delete_entry(self, stream: str, entry_id: str) -> bool: ...


class Refused(Exception):
    """Why the command did not do what was asked, in one line, and the HTTP status that says so."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Letter:
    """One entry of a partition's dead-letter stream (`stream` is that stream's key)."""

    id: str
    fields: dict[bytes, bytes]
    stream: str

    def text(self, name: bytes) -> str:
        value = self.fields.get(name)
        return "-" if value is None else printable(value)

    def summary(self) -> str:
        """The one line `make deadletters list` prints: id, when, original stream, event type, session, reason."""
        names = (b"dead_stream", b"type", b"session", b"dead_reason")
        return "  ".join((self.id, clock(self.id), *(self.text(name) for name in names)))


@dataclass(frozen=True)
class Replay:
    """The fresh event a replay publishes, the stream and partition it goes to, and the key its command writes."""

    stream: CommandStream
    partition: int
    event: Event
    target: str


def printable(value: bytes) -> str:
    """Text as stored, or its Python literal when it is not printable UTF-8: a line stays one line."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return repr(value)
    return text if text.isprintable() else repr(text)


def clock(entry_id: str) -> str:
    """When Redis added the entry: its id starts with the epoch milliseconds."""
    ms = entry_id.partition("-")[0]
    if not ms.isdigit():
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(reply: Reply) -> str:
    """A reply as `200 Player created`."""
    body = reply.body
    message = body.get("message") if isinstance(body, dict) else None
    return f"{reply.status} {message if isinstance(message, str) else orjson.dumps(body).decode()}"


def dead_letter_streams(settings: Settings) -> list[str]:
    return [keys.dead_letters(n) for n in range(settings.stream_partitions)]


def missing(entry_id: str) -> Refused:
    return Refused(f"no dead letter {entry_id}", 404)


async def read_letter(store: LetterStore, settings: Settings, entry_id: str) -> Letter:
    """The letter of that id, in whichever partition's dead-letter stream holds it."""
    for stream in dead_letter_streams(settings):
        try:
            found = await store.stream_entry(stream, entry_id)
        except ResponseError as error:
            if "Invalid stream ID" not in str(error):
                raise
            raise missing(entry_id) from None
        # An incomplete id ("1733130000000") is a range to Redis: only the exact id is this letter.
        if found is not None and found[0].decode() == entry_id:
            return Letter(entry_id, found[1], stream)
    raise missing(entry_id)


async def newest(store: LetterStore, settings: Settings, count: int) -> tuple[list[Letter], int]:
    """The newest `count` letters of every partition, newest first, and how many there are in all."""
    letters: list[Letter] = []
    total = 0
    for stream in dead_letter_streams(settings):
        found = await store.stream_newest(stream, count)
        letters += [Letter(entry_id.decode(), fields, stream) for entry_id, fields in found]
        total += await store.stream_length(stream)
    letters.sort(key=lambda letter: tuple(int(part) for part in letter.id.split("-")), reverse=True)
    return letters[:count], total


def origin(stream_key: str, settings: Settings) -> tuple[CommandStream, int] | None:
    """The command stream and partition a dead letter came from, if it came from one."""
    for stream in HANDLERS:
        for partition in range(settings.stream_partitions):
            if stream.key(partition) == stream_key:
                return stream, partition
    return None


def plan(letter: Letter, settings: Settings) -> Replay:
    """The replay of a letter, checked as its worker would check it, or why it cannot be replayed."""
    stream_key = letter.text(b"dead_stream")
    found = origin(stream_key, settings)
    if found is None:
        raise unreplayable(letter, f"it came from {stream_key}, not a command stream")
    stream, partition = found
    try:
        original = Event.decode(letter.fields, partition)
    except PoisonEvent as error:
        raise unreplayable(letter, f"it is not a decodable envelope ({error})") from None
    handler = HANDLERS[stream](settings).get(original.type)
    if handler is None:
        raise unreplayable(letter, f"{original.type} does not belong on {stream_key}")
    timeout = settings.request_timeout_ms
    event = Event.new(original.type, original.session, original.payload, timeout, partition)
    try:
        action = handler(event)
    except PoisonEvent as error:
        raise unreplayable(letter, f"the {stream.group} worker refuses it ({error})") from None
    return Replay(stream, partition, event, action.key)


def unreplayable(letter: Letter, why: str) -> Refused:
    return Refused(f"dead letter {letter.id} cannot be replayed: {why}", 422)


async def safety(store: LetterStore, replay: Replay, letter: Letter) -> tuple[bool, str]:
    """Whether the replay needs forcing, and why: the replay safety rule."""
    if replay.event.type not in SAVES.events:
        return False, "a score only ever raises its board (ZADD GT): it replays freely"
    if await store.exists(replay.target):
        return True, (
            f"{replay.target} exists and may be newer than dead letter {letter.id}: "
            "a replay would replace the whole document"
        )
    return False, f"{replay.target} does not exist: there is nothing newer to overwrite"


async def verdict(store: LetterStore, settings: Settings, letter: Letter) -> str:
    """What a replay of the letter would do, in one line."""
    try:
        needs_force, why = await safety(store, plan(letter, settings), letter)
    except Refused as refusal:
        return f"refused: {refusal}"
    return f"{why}: only with --force" if needs_force else why


async def replay(
    store: LetterStore, settings: Settings, entry_id: str, *, force: bool, say: Callable[[str], None]
) -> Reply:
    """Publish the letter's command again, wait for its worker, and remove the letter on a 2xx; the
    worker's reply. Each step is told to `say`; a refusal or a failure raises Refused, the letter kept."""
    letter = await read_letter(store, settings, entry_id)
    again = plan(letter, settings)
    needs_force, why = await safety(store, again, letter)
    if needs_force and not force:
        raise Refused(
            f"refused: {why}; compare with `show {letter.id}`, then `replay {letter.id} --force` to do it", 409
        )
    say(f"{why}: replacing it (--force)" if needs_force else why)
    stream = again.stream.key(again.partition)
    await store.publish(stream, again.event.encode(), trim_id(settings.stream_retention_ms))
    say(f"published as event {again.event.id} on {stream}; waiting for the {again.stream.group} worker")
    wait_ms = max(again.event.deadline_ms + REPLY_GRACE_MS - now_ms(), 1)
    reply = await store.wait_for_reply(again.event.reply_to, wait_ms)
    if reply is None:
        raise Refused(
            f"no {again.stream.group} worker answered by the deadline; the event will not be applied late: "
            f"dead letter {letter.id} stays",
            504,
        )
    if not 200 <= reply.status < 300:
        raise Refused(f"the {again.stream.group} worker answered {describe(reply)}: dead letter {letter.id} stays", 502)
    say(f"the {again.stream.group} worker answered {describe(reply)}")
    await store.delete_entry(letter.stream, letter.id)
    say(f"removed dead letter {letter.id}")
    return reply


async def drop(store: LetterStore, settings: Settings, entry_id: str) -> Letter:
    """Delete the letter; the letter it was."""
    letter = await read_letter(store, settings, entry_id)
    if not await store.delete_entry(letter.stream, letter.id):
        raise missing(entry_id)  # dropped by someone else meanwhile
    return letter
