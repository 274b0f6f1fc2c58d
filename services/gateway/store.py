"""The gateway's Redis: every command the gateway sends, behind a method named for what it does.

One client, shared/pipelined.py: every request's commands share one pipelined connection, and the
waits for replies take blocking connections from a capped pool. The command strings and scripts of
the gateway live here and nowhere else in it; the key names come from shared/keys.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import ResponseError

from shared import keys
from shared.connection import ensure_indexes, module_names
from shared.pipelined import PipelinedRedis, Script, as_map
from shared.protocol import Reply

# Admission of a request: its rate limits and, for a write, its live session and the XADD (admit.lua).
ADMIT = Script((Path(__file__).parent / "admit.lua").read_text())
NO_SESSION = -1  # admit.lua's answer when the command's session key is gone
# KEYS: the session, the player's save, the game's save. ARGV: the record, its TTL, NX (create) or XX
# (re-confirm), the saves' TTL. Re-confirming an existing session extends its saves too.
WRITE_SESSION = Script(
    """if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], ARGV[3]) then
  return 0
end
if ARGV[3] == 'XX' then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1"""
)
# A script that may write but writes nothing: Redis refuses it exactly when it refuses writes for want
# of memory (maxmemory), which PING does not show; a busy or unreachable Redis fails it as it would PING.
WRITE_PROBE = Script("#!lua\nreturn 1")


class SessionGone(Exception):
    """The caller's `sessions:` key no longer exists: its cookie is signed but names no live session."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A rate limit counted in one key: `count` requests per `period_ms` (GCRA, see admit.lua)."""

    key: str
    count: int
    period_ms: int

    @classmethod
    def on(cls, rate: tuple[int, int] | None, rule: str, who: str) -> list[Limit]:
        """The limit of `rule` (a parsed setting such as 240/minute) on `who`; none when it is off."""
        return [] if rate is None else [cls(keys.rate_limit(rule, who), *rate)]


@dataclass(frozen=True, slots=True)
class Command:
    """A command to publish: its caller's session key, the stream, the stream's trim MINID, the entry."""

    session_key: str
    stream: str
    min_id: str
    fields: Mapping[bytes, bytes]


class Store:
    def __init__(self, redis: PipelinedRedis) -> None:
        self.redis = redis

    async def aclose(self) -> None:
        await self.redis.aclose()

    # Reads

    async def document(self, key: str) -> bytes | None:
        """A JSON document as Redis stores it, or None."""
        raw: bytes | None = await self.redis.execute("JSON.GET", key)
        return raw

    async def top(self, key: str, count: int) -> list[tuple[str, float]]:
        """The `count` highest members of a sorted set and their scores, highest first."""
        rows: list[bytes] = await self.redis.execute("ZRANGE", key, 0, count - 1, "REV", "WITHSCORES")
        return [(member.decode(), float(score)) for member, score in zip(rows[::2], rows[1::2], strict=True)]

    async def search(self, index: str, query: str, limit: int) -> tuple[int, list[tuple[str, bytes]]]:
        """The total and the first `limit` hits of a search: each hit's key and its document's JSON."""
        command = ("FT.SEARCH", index, query, "VERBATIM", "LIMIT", 0, limit, "DIALECT", 2)
        try:
            answer = await self.redis.execute(*command)
        except ResponseError as error:
            if "no such index" not in str(error).lower():
                raise
            await self.ensure_indexes()  # Redis came back empty: the indexes went with the data
            answer = await self.redis.execute(*command)
        total, rest = answer[0], answer[1:]  # RESP2: the total, then per hit its key and [field, value, ...]
        return int(total), [(key.decode(), as_map(fields)[b"$"]) for key, fields in as_map(rest).items()]

    # Sessions

    async def write_session(self, session_key: str, saves: Sequence[str], record: bytes, ttl_s: int, *,
                            create: bool, saves_ttl_s: int) -> bool:  # fmt: skip
        """Create a session (only if new) or re-confirm one (only if it exists, extending its saves)."""
        args: list[bytes | int | str] = [record, ttl_s, "NX" if create else "XX", saves_ttl_s]
        return bool(await self.redis.script(WRITE_SESSION, [session_key, *saves], args))

    # Admission

    async def admit(self, limits: Sequence[Limit]) -> int:
        """Count a hit on each limit: 0 if all allow it, else the ms until the slowest would."""
        return await self._admit(limits, None)

    async def admit_and_publish(self, limits: Sequence[Limit], command: Command) -> int:
        """As `admit`, and append the command to its stream when admitted: one script, so a refused
        command is never published. SessionGone (nothing counted) when the session key is gone."""
        return await self._admit(limits, command)

    async def _admit(self, limits: Sequence[Limit], command: Command | None) -> int:
        script_keys = [limit.key for limit in limits]
        args: list[str | bytes | int] = [len(limits)]
        for limit in limits:
            args += (limit.count, limit.period_ms)
        if command is not None:
            script_keys += (command.session_key, command.stream)
            args.append(command.min_id)
            for field, value in command.fields.items():
                args += (field, value)
        wait_ms = int(await self.redis.script(ADMIT, script_keys, args))
        if wait_ms == NO_SESSION:
            raise SessionGone
        return wait_ms

    async def wait_for_reply(self, reply_to: str, wait_ms: int) -> Reply | None:
        """Block on a command's reply stream; None if no reply came in time.

        Read from the start of the stream, so a reply written before the read blocks is not missed. A
        wait that ends empty looks once more, without blocking, down the shared connection: the reply may
        have come while every blocking connection was taken (PipelinedRedis's `max_blocking`).
        """
        answer = await self.redis.blocking(
            wait_ms, lambda ms: ("XREAD", "COUNT", 1, "BLOCK", ms, "STREAMS", reply_to, "0-0")
        )
        if not answer:
            answer = await self.redis.execute("XREAD", "COUNT", 1, "STREAMS", reply_to, "0-0")
        if not answer:
            return None
        [[_stream, [[_entry_id, fields]]]] = answer  # RESP2: one stream, one entry, fields flat
        return Reply.decode(dict(zip(fields[::2], fields[1::2], strict=True)))

    # Health and start-up

    async def probe_writes(self) -> None:
        """Raise what a write would meet now: unreachable, busy, out of memory."""
        await self.redis.script(WRITE_PROBE, [], [])

    async def modules(self) -> set[str]:
        return module_names(await self.redis.execute("MODULE", "LIST"))

    async def live_consumers(self, stream: str, group: str, within_ms: int) -> int:
        """Consumers of a group that read within `within_ms`; 0 when the stream or group is missing."""
        try:
            consumers: list[list[Any]] = await self.redis.execute("XINFO", "CONSUMERS", stream, group)
        except ResponseError:  # no stream or no group yet: no worker has started
            return 0
        return sum(1 for consumer in consumers if as_map(consumer)[b"idle"] <= within_ms)

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.redis.execute)
