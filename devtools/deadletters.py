"""`python -m devtools.deadletters`: what landed in the dead-letter streams and why; replay it or drop it.

The rules (what a letter is, when a replay is safe, what it does) are services/deadletters.py's, which
the operators' console calls too; this is their command line, over redis-py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import cast

import orjson
from redis.asyncio import Redis, RedisCluster

from services import deadletters
from services.deadletters import DEAD_FIELDS, Refused, clock, printable
from shared.cli import EPILOG, load_settings
from shared.connection import REDIS_DOWN, connect_any, redact
from shared.protocol import Reply, now_ms
from shared.settings import Settings
from shared.worker import Entry, stream_entries

PROG = "python -m devtools.deadletters"
NAME = "deadletters"  # the prefix of every error line
READ_SLICE_MS = 1000  # each blocking read stays well under the client's socket timeout


class RedisPyLetters:
    """services/deadletters.py's LetterStore over redis-py: a single Redis or, on a cluster, the master
    of each partition (REDIS_URL)."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def stream_newest(self, stream: str, count: int) -> list[Entry]:
        return cast(list[Entry], await self.redis.xrevrange(stream, count=count))

    async def stream_entry(self, stream: str, entry_id: str) -> Entry | None:
        found = cast(list[Entry], await self.redis.xrange(stream, entry_id, entry_id, count=1))
        return found[0] if found else None

    async def stream_length(self, stream: str) -> int:
        return int(await self.redis.xlen(stream))

    async def exists(self, key: str) -> bool:
        return bool(await self.redis.exists(key))

    async def publish(self, stream: str, fields: Mapping[bytes, bytes], min_id: str) -> None:
        await self.redis.xadd(stream, dict(fields), minid=min_id)  # type: ignore[arg-type]

    async def wait_for_reply(self, reply_to: str, wait_ms: int) -> Reply | None:
        """The reply, read from the start of its stream as the gateway reads it; None after `wait_ms`."""
        give_up = now_ms() + wait_ms
        while (left := give_up - now_ms()) > 0:
            answer = await self.redis.xread({reply_to: "0-0"}, count=1, block=min(left, READ_SLICE_MS))
            for _entry_id, fields in stream_entries(answer):
                return Reply.decode(fields)
        return None

    async def delete_entry(self, stream: str, entry_id: str) -> bool:
        return bool(await self.redis.xdel(stream, entry_id))


async def list_letters(store: RedisPyLetters, settings: Settings, count: int) -> None:
    """The newest `count` letters of every partition, newest first."""
    letters, total = await deadletters.newest(store, settings, count)
    if not letters:
        print("no dead letters", file=sys.stderr)
    for letter in letters:
        print(letter.summary())
    older = total - len(letters)
    if older > 0:
        print(f"({older} older: --count to see more)", file=sys.stderr)


async def show(store: RedisPyLetters, settings: Settings, entry_id: str) -> None:
    letter = await deadletters.read_letter(store, settings, entry_id)
    source = letter.text(b"dead_entry")
    verdict = await deadletters.verdict(store, settings, letter)
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


async def drop(store: RedisPyLetters, settings: Settings, entry_id: str) -> None:
    letter = await deadletters.drop(store, settings, entry_id)
    print(f"dropped dead letter {letter.id} ({letter.text(b'dead_reason')})")


async def run(args: argparse.Namespace, settings: Settings) -> None:
    redis = await connect_any(settings.redis_url, max_connections=2)  # a cluster: each partition on its master
    store = RedisPyLetters(redis)
    try:
        if args.command == "list":
            await list_letters(store, settings, args.count)
        elif args.command == "show":
            await show(store, settings, args.id)
        elif args.command == "replay":
            await deadletters.replay(store, settings, args.id, force=args.force, say=print)
        else:
            await drop(store, settings, args.id)
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
