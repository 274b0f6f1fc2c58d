"""The gateway's Redis: every command the gateway sends, behind a method named for what it does.

One client, shared/pipelined.py: every request's commands share one pipelined connection, and the
waits for replies take blocking connections from a capped pool. The command strings and scripts of
the gateway live here and nowhere else in it; the key names come from shared/keys.py.

Each command names the key that routes it on a Redis Cluster (`route`; a script's first key), and a
search asks every master's index (keys.index_names). On a single Redis the route is never looked at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import exceptions

from shared import keys
from shared.connection import ensure_indexes, module_names
from shared.pipelined import Arg, PipelinedRedis, Script, as_map, read_entries
from shared.protocol import LIVE_TOP_FIELD, LUA_TIES, Reply, live_top_rows, scores_of

# Admission of a request: its rate limits and, for a write, its live session and the XADD (admit.lua).
ADMIT = Script((Path(__file__).parent / "admit.lua").read_text())
SESSION_ELSEWHERE = -2  # admit.lua's answer when the stream's master does not serve the session key
# A script that may write but writes nothing: Redis refuses it exactly when it refuses writes for want
# of memory (maxmemory), which PING does not show; a busy or unreachable Redis fails it as it would PING.
WRITE_PROBE = Script("#!lua\nreturn 1")
# A save and its version, read together (KEYS: the document, its version key; one slot), whichever
# type the version key has: for a save whose JSON.MGET found no version (Store.versioned_document).
READ_VERSIONED = Script(
    """#!lua flags=no-writes
local document = redis.call('JSON.GET', KEYS[1])
local version = document and redis.pcall('JSON.GET', KEYS[2])
if type(version) == 'table' then
  version = redis.call('GET', KEYS[2])
elseif version then
  version = string.sub(version, 2, -2)
end
return {document or false, version or false}
"""
)
# A save's expiry extended, and its version's with it, so its ETag lasts as long as it does; a deleted
# save's version key keeps its own, shorter expiry (KEYS: the document, its version key; ARGV: seconds).
EXTEND_SAVE = Script(
    "if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) return 1 end return 0"
)


# Every read that ranks orders ties as shared/ties.lua says (its functions come first). KEYS: the board
# and, beside it in its slot, its reached times (keys.board_reached), then the script's own.
def ranking(body: str) -> Script:
    return Script("#!lua flags=no-writes\n" + LUA_TIES + body)


# A page of a board: ARGV, its first and last rank (0-based).
PAGE = ranking("return tied_range(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))")
# A board's top and the id of its live stream's last entry, at one instant (they share a slot): reading
# the stream on from that id, a reader misses no change after the top it has, and sees none before it.
# KEYS[3]: the live stream. ARGV: the top's size.
LIVE_SNAPSHOT = ranking(
    "local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]\n"
    "return {last and last[1] or '0-0', (tied_range(KEYS[1], KEYS[2], 0, tonumber(ARGV[1]) - 1))}"
)
# A page of the current board, or nothing when it still holds a season older than the current one
# (no score of the new season has rolled it over yet). KEYS[3]: the board's season marker.
# ARGV: the first and last rank (0-based), the current season's start (ms).
CURRENT_PAGE = ranking(
    """
local held = redis.call('GET', KEYS[3])
if held and tonumber(held) < tonumber(ARGV[3]) then
  return {}
end
return tied_range(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)
# A player's entry and its neighbours, found by id: one round trip, in the board's slot.
# KEYS[3]: the board's member index, and with seasons KEYS[4] its marker. ARGV: the player id, how
# many neighbours each side, and with seasons the current season's start (ms).
# Returns nil (no entry), or the player's 0-based rank, the first row's and the rows (member, score, ...).
AROUND = ranking(
    """
if KEYS[4] then
  local held = redis.call('GET', KEYS[4])
  if held and tonumber(held) < tonumber(ARGV[3]) then
    return nil
  end
end
local member = redis.call('HGET', KEYS[3], ARGV[1])
return member and tied_around(KEYS[1], KEYS[2], member, tonumber(ARGV[2]))
"""
)
# A player's entry on a board, found by id (KEYS[3]: the member index; ARGV: the id): its member,
# score and 0-based rank, or nil.
ENTRY = ranking(
    """
local member = redis.call('HGET', KEYS[3], ARGV[1])
local found = member and tied_around(KEYS[1], KEYS[2], member, 0)
return found and {member, found[3][2], found[1]}
"""
)

Rows = list[tuple[str, int | float]]  # board members and their scores (as_number), highest first


# Not frozen, for the reason Event is not (shared/protocol.py).
@dataclass(slots=True)
class RateLimit:
    """A rate limit counted in one key: `count` requests per `period_ms` (GCRA, see admit.lua)."""

    key: str
    count: int
    period_ms: int

    @classmethod
    def on(cls, rate: tuple[int, int] | None, key: str) -> list[RateLimit]:
        """A limit (a parsed setting such as 240/minute) counted in `key`; none when it is off."""
        return [] if rate is None else [cls(key, *rate)]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as XINFO GROUPS shows it; `lag` is None when Redis cannot tell."""

    name: str
    pending: int
    lag: int | None

    @classmethod
    def of(cls, fields: Mapping[bytes, Any]) -> GroupInfo:
        lag = fields.get(b"lag")
        return cls(fields[b"name"].decode(), int(fields[b"pending"]), None if lag is None else int(lag))


# Not frozen, for the reason Event is not (shared/protocol.py).
@dataclass(slots=True)
class Command:
    """A command to publish: the stream, the stream's trim MINID, the entry."""

    stream: str
    min_id: str
    fields: Mapping[bytes, bytes]


TIED_PAGES = 1024  # pages remembered as tied, per process


class Store:
    def __init__(self, redis: PipelinedRedis) -> None:
        self.redis = redis
        self.unlinks: set[asyncio.Task[Any]] = set()  # reply streams being removed: kept until done
        self.tied_pages: dict[tuple[str, int, int], None] = {}  # board pages last seen holding a tie, oldest first

    async def aclose(self) -> None:
        await self.redis.aclose()

    # Reads

    async def document(self, key: str) -> bytes | None:
        """A JSON document as Redis stores it, or None."""
        raw: bytes | None = await self.redis.execute("JSON.GET", key, route=key)
        return raw

    async def versioned_document(self, key: str) -> tuple[bytes | None, str | None]:
        """A JSON document and its version (shared/keys.py version()), read in one atomic step.

        The version key holds a JSON string, so one JSON.MGET reads both (cheaper for the gateway
        and for Redis than MULTI/EXEC: docs/benchmarks.md). A save without a JSON version is read
        once more by a script: it has none (written before versions), or a plain string from before
        versions were JSON (shared/apply_commands.lua), until its next write.
        """
        version_key = keys.version(key)
        document, version = await self.redis.execute("JSON.MGET", key, version_key, ".", route=key)
        if version is not None:
            return document, version[1:-1].decode()
        if document is None:
            return None, None
        document, version = await self.redis.script(READ_VERSIONED, [key, version_key], [])
        return document, None if version is None else version.decode()

    async def top(self, key: str, count: int, offset: int = 0) -> Rows:
        """`count` members of a board and their scores, highest first (ties as shared/ties.lua orders them),
        from the `offset`th. A page whose scores no other entry shares (a row more each side tells) is
        in Redis's own order, read with one ZRANGE: a script call costs Redis several times as much
        (docs/benchmarks.md, "Ties"); a page with a tie in it goes to the script, at once while this
        process last saw a tie on it (`tied_pages`), so a tied page costs one round trip, not two."""
        last = offset + count - 1
        page = (key, offset, count)
        if page not in self.tied_pages:
            first = max(offset - 1, 0)
            window: list[bytes] = await self.redis.execute(
                "ZRANGE", key, first, last + 1, "REV", "WITHSCORES", route=key
            )
            scores = window[1::2]
            if len(set(scores)) == len(scores):
                return rows_of(window[2 * (offset - first) :][: 2 * count])
        rows = rows_of(await self.redis.script(PAGE, [key, keys.board_reached(key)], [offset, last]))
        if len({score for _, score in rows}) < len(rows):
            self.tied_pages[page] = None
            if len(self.tied_pages) > TIED_PAGES:
                del self.tied_pages[next(iter(self.tied_pages))]  # the oldest
        else:  # no tie within the page now: the next read looks again, edges included
            self.tied_pages.pop(page, None)
        return rows

    async def current_top(self, key: str, marker: str, season_start_ms: int, count: int, offset: int = 0) -> Rows:
        """As `top`, on a board with seasons: none when it still holds a season before `season_start_ms`."""
        last = offset + count - 1
        script_keys = [key, keys.board_reached(key), marker]
        return rows_of(await self.redis.script(CURRENT_PAGE, script_keys, [offset, last, season_start_ms]))

    async def around(
        self, key: str, members: str, player_id: str, around: int, marker: str | None = None, season_start_ms: int = 0
    ) -> tuple[int, int, Rows] | None:
        """The player's 0-based rank, the first row's, and the rows from `around` above the player's
        entry to `around` below; None when the player has none (or the board holds a past season)."""
        script_keys = [key, keys.board_reached(key), members, *([] if marker is None else [marker])]
        found = await self.redis.script(AROUND, script_keys, [player_id, around, season_start_ms])
        if not found:
            return None
        rank, first, rows = found
        return rank, first, rows_of(rows)

    async def entry(self, key: str, members: str, player_id: str) -> tuple[str, int | float, int] | None:
        """The player's member, score and 0-based rank on a board; None without an entry."""
        found = await self.redis.script(ENTRY, [key, keys.board_reached(key), members], [player_id])
        if not found:
            return None
        member, score, rank = found
        return member.decode(), scores_of([score])[0], int(rank)

    async def recovery_hash(self, player_id: str) -> str | None:
        """The hash of the player's current recovery code, if they have one."""
        key = keys.recovery_player(player_id)
        found: bytes | None = await self.redis.execute("GET", key, route=key)
        return None if found is None else found.decode()

    async def seasons(self, key: str, oldest_start_ms: int) -> list[str]:
        """The labels in a board's list of seasons from `oldest_start_ms` on, newest first."""
        labels: list[bytes] = await self.redis.execute(
            "ZRANGE", key, "+inf", oldest_start_ms, "BYSCORE", "REV", route=key
        )
        return [label.decode() for label in labels]

    # Live tops (services/gateway/live.py)

    @property
    def is_cluster(self) -> bool:
        """Known once ensure_indexes (at start-up) has asked Redis."""
        return self.redis.shard_tags is not None

    async def live_snapshot(self, board: str, stream: str, count: int) -> tuple[bytes, list[tuple[str, float]]]:
        """A board's top `count` and the id of its live stream's last entry (b"0-0" for none), together."""
        last_id, rows = await self.redis.script(LIVE_SNAPSHOT, [board, keys.board_reached(board), stream], [count])
        return last_id, [(member.decode(), float(score)) for member, score in zip(rows[::2], rows[1::2], strict=True)]

    async def live_announcements(
        self, after: Mapping[str, bytes], wait_ms: int
    ) -> dict[str, tuple[bytes, list[tuple[str, float]]]]:
        """For each live stream with entries after the id given, the newest one's id and its top; waits
        up to `wait_ms` for one. On a cluster the streams must share a slot."""
        streams = list(after)
        answer = await self.redis.blocking(
            wait_ms,
            lambda ms: ("XREAD", "BLOCK", ms, "STREAMS", *streams, *after.values()),
            route=streams[0],
        )
        newest: dict[str, tuple[bytes, list[tuple[str, float]]]] = {}
        for stream, entries in answer or ():  # RESP2: [[stream, [[id, [field, value, ...]], ...]], ...]
            entry_id, fields = entries[-1]
            newest[stream.decode()] = entry_id, live_top_rows(as_map(fields)[LIVE_TOP_FIELD])
        return newest

    async def search(self, index: str, query: str, limit: int) -> tuple[int, list[tuple[str, bytes]]]:
        """The total and the first `limit` hits of a search: each hit's key and its document's JSON.

        On a cluster every master's index answers for its own documents: the totals add up, and the
        hits are the first masters' up to `limit`. There the search module returns no document's
        content (nil, without a coordinator), so each hit's document is read with JSON.GET.
        """
        names = keys.index_names(index, self.redis.shard_tags)
        if len(names) == 1:
            total, rest = await self._search(names[0], query, limit)
            return total, [(key.decode(), as_map(fields)[b"$"]) for key, fields in as_map(rest).items()]
        answers = await asyncio.gather(*(self._search(name, query, limit, "NOCONTENT") for name in names))
        found = [key.decode() for _, hit_keys in answers for key in hit_keys][:limit]
        documents = await asyncio.gather(*(self.document(key) for key in found))
        hits = [(key, document) for key, document in zip(found, documents, strict=True) if document is not None]
        return sum(total for total, _ in answers), hits

    async def _search(self, name: str, query: str, limit: int, *options: str) -> tuple[int, list[Any]]:
        """The total and the rest of an FT.SEARCH answer (RESP2: per hit its key, and [field, value, ...])."""
        command: tuple[Arg, ...] = ("FT.SEARCH", name, query, "VERBATIM", *options, "LIMIT", 0, limit, "DIALECT", 2)
        try:
            answer = await self.redis.execute(*command, route=name)
        except exceptions.ResponseError as error:
            if "no such index" not in str(error).lower():
                raise
            await self.ensure_indexes()  # Redis came back empty (the indexes went with the data), or a new master
            answer = await self.redis.execute(*command, route=name)
        return int(answer[0]), answer[1:]

    # Sessions

    async def exists(self, key: str) -> bool:
        return bool(await self.redis.execute("EXISTS", key, route=key))

    async def write_session(
        self, session_key: str, saves: Sequence[str], record: bytes, ttl_s: int, *, create: bool, saves_ttl_s: int
    ) -> bool:
        """Create a session (only if new) or re-confirm one (only if it exists) and extend its saves.

        Separate commands, sent together: on a Redis Cluster the session and the saves live in slots
        of their own. Extending the saves of a session found gone costs nothing but their TTL. A save's
        version key is extended with it (EXTEND_SAVE).
        """
        if create:
            return bool(await self.redis.execute("SET", session_key, record, "EX", ttl_s, "NX", route=session_key))
        confirmed, *_extended = await asyncio.gather(
            self.redis.execute("SET", session_key, record, "EX", ttl_s, "XX", route=session_key),
            *(self.redis.script(EXTEND_SAVE, [key, keys.version(key)], [saves_ttl_s]) for key in saves),
        )
        return bool(confirmed)

    # Recovery codes: `recovery:code:{hash}` leads to a player, `recovery:player:{id}` names the hash of
    # their current code, and a code is valid only while both agree. On a Redis Cluster the two live in
    # slots of their own (the first is found by the code, the second by the player), so no script holds
    # both: the player's record is the one switch, written in one command, and the rest is bookkeeping.

    async def issue_recovery(self, player_id: str, code_hash: str, ttl_s: int) -> None:
        """Make `code_hash` the player's current code, which revokes the one before.

        In this order, each step safe to stop after: the new code's entry first (until the switch it
        leads nowhere, and no one has seen the code); then the switch, whose GET returns the old hash;
        then the old entry is deleted (left behind, it is refused, and expires).
        """
        code_key, player_key = keys.recovery_code(code_hash), keys.recovery_player(player_id)
        await self.redis.execute("SET", code_key, player_id, "EX", ttl_s, route=code_key)
        old: bytes | None = await self.redis.execute("SET", player_key, code_hash, "EX", ttl_s, "GET", route=player_key)
        if old is not None and old.decode() != code_hash:
            old_key = keys.recovery_code(old.decode())
            await self.redis.execute("DEL", old_key, route=old_key)

    async def revoke_recovery(self, player_id: str, code_hash: str) -> None:
        """Remove a code just issued, for a player whose account an erase removed meanwhile."""
        code_key, player_key = keys.recovery_code(code_hash), keys.recovery_player(player_id)
        await asyncio.gather(
            self.redis.execute("DEL", player_key, route=player_key), self.redis.execute("DEL", code_key, route=code_key)
        )

    async def recovered_player(self, code_hash: str, ttl_s: int) -> str | None:
        """The player whose current code hashes to `code_hash`, its records' TTL restarted; None if the
        code is unknown, expired or revoked."""
        code_key = keys.recovery_code(code_hash)
        found: bytes | None = await self.redis.execute("GET", code_key, route=code_key)
        if found is None:
            return None
        player_id = found.decode()
        player_key = keys.recovery_player(player_id)
        current: bytes | None = await self.redis.execute("GET", player_key, route=player_key)
        if current is None or current.decode() != code_hash:
            return None
        await asyncio.gather(
            self.redis.execute("EXPIRE", code_key, ttl_s, route=code_key),
            self.redis.execute("EXPIRE", player_key, ttl_s, route=player_key),
        )
        return player_id

    # Admission

    async def admit(self, limits: Sequence[RateLimit]) -> int:
        """Count a hit on each limit: 0 if all allow it, else the ms until the slowest would."""
        return int(await self._admit(limits, None))

    async def admit_and_publish(
        self, limits: Sequence[RateLimit], command: Command, session_key: str | None
    ) -> int | str | None:
        """As `admit`, and append the command to its stream when admitted: one script, so a refused
        command is never published. The ms to wait, or the published entry's id; None, with nothing
        counted or published, when the session key is gone. The limits' keys and the stream must
        share a hash slot.

        The script checks the session too, when the stream's master serves it (always on a single
        Redis; on a cluster for the ids placed_session_id places). Elsewhere, or once its slot has
        moved (the script's -2), it is checked just before, which leaves a session that expires in
        between one last write. Without a session key, none is checked."""
        answer = SESSION_ELSEWHERE
        if session_key is None or self.master_of(session_key) == self.master_of(command.stream):
            answer = await self._admit(limits, command, session_key)
        if answer == SESSION_ELSEWHERE and session_key is not None:
            if not await self.exists(session_key):
                return None
            answer = await self._admit(limits, command)
        if isinstance(answer, bytes):
            return answer.decode()
        return None if answer < 0 else int(answer)

    def master_of(self, key: str) -> str | None:
        """The address of the master serving `key`, as far as the slot map read last knows: "" on a
        single Redis, None for a slot no master serves."""
        try:
            return self.redis.master_of(key)
        except exceptions.ConnectionError:
            return None

    async def _admit(self, limits: Sequence[RateLimit], command: Command | None, session_key: str | None = None) -> Any:
        script_keys = [limit.key for limit in limits]
        args: list[str | bytes | int] = [len(limits)]
        for limit in limits:
            args += (limit.count, limit.period_ms)
        if command is not None:
            script_keys.append(command.stream)
            args += (session_key or "", command.min_id)
            for field, value in command.fields.items():
                args += (field, value)
        return await self.redis.script(ADMIT, script_keys, args)

    async def wait_for_reply(self, reply_to: str, wait_ms: int) -> Reply | None:
        """Block on a command's reply stream; None if no reply came in time.

        Read from the start of the stream, so a reply written before the read blocks is not missed. A
        wait that ends empty looks once more, without blocking, down the shared connection: the reply may
        have come while every blocking connection was taken (PipelinedRedis's `max_blocking`).
        """
        answer = await self.redis.blocking(
            wait_ms, lambda ms: ("XREAD", "COUNT", 1, "BLOCK", ms, "STREAMS", reply_to, "0-0"), route=reply_to
        )
        if not answer:
            answer = await self.redis.execute("XREAD", "COUNT", 1, "STREAMS", reply_to, "0-0", route=reply_to)
        entries = read_entries(answer)
        if not entries:
            return None
        self.forget(reply_to)
        return Reply.decode(entries[0][1])

    def forget(self, reply_to: str) -> None:
        """Remove a reply stream once read, rather than keep it REPLY_TTL_S (at the rate of writes), in
        the background: the caller's answer does not wait for it; if it fails, the stream expires."""
        unlink = asyncio.ensure_future(self.redis.execute("UNLINK", reply_to, route=reply_to))
        self.unlinks.add(unlink)
        unlink.add_done_callback(self.unlinked)

    def unlinked(self, unlink: asyncio.Task[Any]) -> None:
        self.unlinks.discard(unlink)
        if not unlink.cancelled():
            unlink.exception()  # retrieved: a Redis error here leaves the stream to its expiry

    # Health and start-up

    def each_master(self) -> list[str | None]:
        """A route to each master on a cluster (a key in a slot it owns); on a single Redis, the one."""
        tags = self.redis.shard_tags
        return [None] if tags is None else [f"{{{tag}}}" for tag in tags]

    async def probe_writes(self) -> None:
        """Raise what a write would meet now, on any master: unreachable, busy, out of memory."""
        await asyncio.gather(*(self.redis.script(WRITE_PROBE, [], [], route) for route in self.each_master()))

    async def modules(self) -> set[str]:
        """The modules every master has loaded."""
        answers = await asyncio.gather(*(self.redis.execute("MODULE", "LIST", route=r) for r in self.each_master()))
        return set.intersection(*(module_names(answer) for answer in answers))

    async def live_consumers(self, stream: str, group: str, within_ms: int) -> int:
        """Consumers of a group that read within `within_ms`; 0 when the stream or group is missing."""
        try:
            consumers: list[list[Any]] = await self.redis.execute("XINFO", "CONSUMERS", stream, group, route=stream)
        except exceptions.ResponseError:  # no stream or no group yet: no worker has started
            return 0
        return sum(1 for consumer in consumers if as_map(consumer)[b"idle"] <= within_ms)

    async def ensure_indexes(self) -> None:
        """At start-up, and when an index is missing: learn what Redis is (one server or a cluster, and
        its masters), then create the indexes on every master."""
        await self.redis.discover()

        async def create(*command: str) -> Any:
            return await self.redis.execute(*command, route=command[1])  # an index lives in its name's slot

        await ensure_indexes(create, self.redis.shard_tags)

    # The operators' console (services/gateway/admin.py) and the dead letters (services/deadletters.py)

    async def is_member(self, key: str, member: str) -> bool:
        return bool(await self.redis.execute("SISMEMBER", key, member, route=key))

    async def field(self, key: str, name: str) -> bytes | None:
        """One field of a hash."""
        value: bytes | None = await self.redis.execute("HGET", key, name, route=key)
        return value

    async def audit(self, fields: Mapping[str, str], kept: int) -> None:
        """Record an admin write in the capped audit stream."""
        flat = [part for pair in fields.items() for part in pair]
        await self.redis.execute("XADD", keys.ADMIN_AUDIT, "MAXLEN", "~", kept, "*", *flat, route=keys.ADMIN_AUDIT)

    async def stream_newest(self, stream: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """A stream's newest `count` entries, newest first."""
        entries = await self.redis.execute("XREVRANGE", stream, "+", "-", "COUNT", count, route=stream)
        return [(entry_id, as_map(fields)) for entry_id, fields in entries]

    async def stream_entry(self, stream: str, entry_id: str) -> tuple[bytes, dict[bytes, bytes]] | None:
        """The first entry of `stream` from `entry_id` to `entry_id` (a bare time is a range to Redis)."""
        found = await self.redis.execute("XRANGE", stream, entry_id, entry_id, "COUNT", 1, route=stream)
        return (found[0][0], as_map(found[0][1])) if found else None

    async def publish(self, stream: str, fields: Mapping[bytes, bytes], min_id: str) -> None:
        """Append a command to its stream with no admission: an operator's replay of a dead letter."""
        await self._admit([], Command(stream, min_id, fields))

    async def delete_entry(self, stream: str, entry_id: str) -> bool:
        return bool(await self.redis.execute("XDEL", stream, entry_id, route=stream))

    # Metrics, read at scrape time

    async def stream_length(self, key: str) -> int:
        return int(await self.redis.execute("XLEN", key, route=key))

    async def stream_groups(self, key: str) -> tuple[int, list[GroupInfo]]:
        """A stream's length and its consumer groups; 0 and none before its first worker made it."""
        try:
            length, groups = await asyncio.gather(
                self.redis.execute("XLEN", key, route=key), self.redis.execute("XINFO", "GROUPS", key, route=key)
            )
        except exceptions.ResponseError:  # no such key yet
            return 0, []
        return int(length), [GroupInfo.of(as_map(group)) for group in groups]

    async def event_counts(self) -> dict[tuple[str, str], int]:
        """What the workers counted (shared/worker.py), by group and outcome."""
        flat: list[bytes] = await self.redis.execute("HGETALL", keys.EVENT_COUNTS, route=keys.EVENT_COUNTS)
        counts = as_map(flat)
        return {keys.event_count_field_parts(name.decode()): int(count) for name, count in counts.items()}


def rows_of(flat: list[bytes]) -> Rows:
    """A `ZRANGE ... WITHSCORES` answer (RESP2: member, score, ...) as pairs."""
    return list(zip(map(bytes.decode, flat[::2]), scores_of(flat[1::2]), strict=True))
