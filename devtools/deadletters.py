"""`python -m devtools.deadletters`: what landed in the dead-letter streams and why; replay it or drop it.

A worker dead-letters an entry it cannot apply as the entry's own fields plus `dead_reason`,
`dead_entry` and `dead_stream` (shared/worker.py). A replay publishes the command again as a fresh
event (new id, deadline and reply stream) on the stream it came from and waits for the worker's
reply, as the gateway does. The safety rule: a score only ever raises its board (`ZADD GT`), so it
replays freely; a save replaces its whole document, which may be newer than the dead letter, so it
is refused while that document exists unless `--force` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from services.leaderboard import handlers as leaderboard
from services.saves import handlers as saves
from shared import keys
from shared.cli import EPILOG, load_settings
from shared.connection import REDIS_DOWN, connect_any, redact
from shared.protocol import (
    SAVES,
    SCORES,
    CommandStream,
    Event,
    EventType,
    PoisonEvent,
    Reply,
    now_ms,
    trim_id,
)
from shared.settings import Settings
from shared.worker import Entry, Handler, stream_entries

PROG = "python -m devtools.deadletters"
NAME = "deadletters"  # the prefix of every error line
DEAD_FIELDS = (b"dead_reason", b"dead_entry", b"dead_stream")
# Each command stream with the handlers its worker runs: a replay is checked as the worker checks it.
HANDLERS: dict[CommandStream, Callable[[Settings], Mapping[EventType, Handler]]] = {
    SAVES: saves.handlers,
    SCORES: leaderboard.handlers,
}
REPLY_GRACE_MS = 1000  # past the deadline: a reply written right at it is still read
READ_SLICE_MS = 1000  # each blocking read stays well under the client's socket timeout
# The tool follows REDIS_URL to a single Redis or, on a cluster, to the master of each partition.
Client = Redis | RedisCluster


class Refused(Exception):
    """Why the command did not do what was asked, in one line; the exit code is 1."""


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
        """The one line `list` prints: id, when, original stream, event type, session, reason."""
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


async def read_letter(redis: Client, settings: Settings, entry_id: str) -> Letter:
    """The letter of that id, in whichever partition's dead-letter stream holds it."""
    for stream in dead_letter_streams(settings):
        try:
            found = cast(list[Entry], await redis.xrange(stream, entry_id, entry_id, count=1))
        except ResponseError as error:
            if "Invalid stream ID" not in str(error):
                raise
            raise Refused(f"no dead letter {entry_id}") from None
        # An incomplete id ("1733130000000") is a range to Redis: only the exact id is this letter.
        if found and found[0][0].decode() == entry_id:
            return Letter(entry_id, found[0][1], stream)
    raise Refused(f"no dead letter {entry_id}")


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
    return Refused(f"dead letter {letter.id} cannot be replayed: {why}")


async def safety(redis: Client, replay: Replay, letter: Letter) -> tuple[bool, str]:
    """Whether the replay needs --force, and why: the replay safety rule."""
    if replay.event.type not in SAVES.events:
        return False, "a score only ever raises its board (ZADD GT): it replays freely"
    if await redis.exists(replay.target):
        return True, (
            f"{replay.target} exists and may be newer than dead letter {letter.id}: "
            "a replay would replace the whole document"
        )
    return False, f"{replay.target} does not exist: there is nothing newer to overwrite"


async def list_letters(redis: Client, settings: Settings, count: int) -> None:
    """The newest `count` letters of every partition, newest first."""
    letters: list[Letter] = []
    total = 0
    for stream in dead_letter_streams(settings):
        newest = cast(list[Entry], await redis.xrevrange(stream, count=count))
        letters += [Letter(entry_id.decode(), fields, stream) for entry_id, fields in newest]
        total += await redis.xlen(stream)
    letters.sort(key=lambda letter: tuple(int(part) for part in letter.id.split("-")), reverse=True)
    if not letters:
        print("no dead letters", file=sys.stderr)
    for letter in letters[:count]:
        print(letter.summary())
    older = total - min(count, len(letters))
    if older > 0:
        print(f"({older} older: --count to see more)", file=sys.stderr)


async def show(redis: Client, settings: Settings, entry_id: str) -> None:
    letter = await read_letter(redis, settings, entry_id)
    source = letter.text(b"dead_entry")
    try:
        needs_force, why = await safety(redis, plan(letter, settings), letter)
        verdict = f"{why}: only with --force" if needs_force else why
    except Refused as refusal:
        verdict = f"refused: {refusal}"
    print(f"dead letter  {letter.id} ({clock(letter.id)})")
    print(f"reason       {letter.text(b'dead_reason')}")
    print(f"from         {letter.text(b'dead_stream')}, entry {source} ({clock(source)})")
    print(f"replay       {verdict}")
    stored = letter.fields.get(b"payload")
    payload = None if stored is None else pretty_json(stored)  # None: shown raw with the other fields
    for name, value in letter.fields.items():
        if name not in DEAD_FIELDS and not (name == b"payload" and payload is not None):
            print(f"{printable(name):<12} {printable(value)}")
    if payload is not None:
        print(f"payload\n{payload}")


def pretty_json(value: bytes) -> str | None:
    try:
        return orjson.dumps(orjson.loads(value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return None


async def replay(redis: Client, settings: Settings, entry_id: str, *, force: bool) -> None:
    letter = await read_letter(redis, settings, entry_id)
    again = plan(letter, settings)
    needs_force, why = await safety(redis, again, letter)
    if needs_force and not force:
        raise Refused(f"refused: {why}; compare with `show {letter.id}`, then `replay {letter.id} --force` to do it")
    print(f"{why}: replacing it (--force)" if needs_force else why)
    stream = again.stream.key(again.partition)
    await redis.xadd(stream, again.event.encode(), minid=trim_id(settings.stream_retention_ms))  # type: ignore[arg-type]
    print(f"published as event {again.event.id} on {stream}; waiting for the {again.stream.group} worker")
    reply = await await_reply(redis, again.event)
    if reply is None:
        raise Refused(
            f"no {again.stream.group} worker answered by the deadline; the event will not be applied late: "
            f"dead letter {letter.id} stays"
        )
    if not 200 <= reply.status < 300:
        raise Refused(f"the {again.stream.group} worker answered {describe(reply)}: dead letter {letter.id} stays")
    print(f"the {again.stream.group} worker answered {describe(reply)}")
    await redis.xdel(letter.stream, letter.id)
    print(f"removed dead letter {letter.id}")


async def await_reply(redis: Client, event: Event) -> Reply | None:
    """The worker's reply, read from the start of its stream as the gateway reads it; None past the deadline."""
    give_up = event.deadline_ms + REPLY_GRACE_MS
    while (left := give_up - now_ms()) > 0:
        answer = await redis.xread({event.reply_to: "0-0"}, count=1, block=min(left, READ_SLICE_MS))
        for _entry_id, fields in stream_entries(answer):
            return Reply.decode(fields)
    return None


async def drop(redis: Client, settings: Settings, entry_id: str) -> None:
    letter = await read_letter(redis, settings, entry_id)
    if not await redis.xdel(letter.stream, letter.id):
        raise Refused(f"no dead letter {entry_id}")  # dropped by someone else meanwhile
    print(f"dropped dead letter {letter.id} ({letter.text(b'dead_reason')})")


async def run(args: argparse.Namespace, settings: Settings) -> None:
    redis = await connect_any(settings.redis_url, max_connections=2)  # a cluster: each partition on its master
    try:
        if args.command == "list":
            await list_letters(redis, settings, args.count)
        elif args.command == "show":
            await show(redis, settings, args.id)
        elif args.command == "replay":
            await replay(redis, settings, args.id, force=args.force)
        else:
            await drop(redis, settings, args.id)
    finally:
        await redis.aclose()


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, replay and drop the entries workers could not apply (stream:{N}:dead-letter).",
        epilog=f"Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 a usage mistake. {EPILOG}",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="{list,show,replay,drop}")
    listing = commands.add_parser(
        "list",
        help="the newest dead letters, one a line",
        description="The newest dead letters first, one a line: entry id, when it was dead-lettered (UTC), "
        "the stream it came from, event type, session, reason.",
    )
    listing.add_argument("--count", type=positive, default=20, help="how many (default 20)")
    showing = commands.add_parser(
        "show",
        help="one dead letter in full",
        description="Every field of one dead letter, the payload as indented JSON, and what a replay would do.",
    )
    replaying = commands.add_parser(
        "replay",
        help="publish it again and remove it once applied",
        description="Publish the command again as a fresh event on the stream it came from, wait for the worker's "
        "reply, and remove the dead letter when the reply is a success. A score replays freely (it only ever "
        "raises its board); a save is refused while its document exists, since it would replace it whole.",
    )
    replaying.add_argument("--force", action="store_true", help="replay a save even over an existing document")
    dropping = commands.add_parser("drop", help="delete it", description="Delete one dead letter.")
    for command in (showing, replaying, dropping):
        command.add_argument("id", help="the dead letter's entry id, as `list` shows it")
    return main


def main() -> None:
    args = parser().parse_args()
    settings = load_settings(NAME)
    try:
        asyncio.run(run(args, settings))
    except Refused as refusal:
        sys.exit(f"{NAME}: {refusal}")
    except REDIS_DOWN as error:
        sys.exit(f"{NAME}: cannot reach Redis at {redact(settings.redis_url)} ({error}); is REDIS_URL right?")


if __name__ == "__main__":
    main()
