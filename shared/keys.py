"""Every Redis key, index and consumer group the project uses, and nothing else names one.

The data keys and indexes are fixed by the HTTP contract (API.md); the stream
keys are the services' own and all live under `stream:`.

On a Redis Cluster a script may touch the keys of one hash slot only. So the
command streams are partitioned (STREAM_PARTITIONS), and everything one
partition's scripts touch shares its hash tag `{N}`: the command stream, its
reply streams, its dead letters and the write limits counted as a command is
admitted. A document's version key is tagged with the document's own key name,
which puts it in the document's slot; so are a board's companions (its member
index, reached times, season marker, list of seasons and verified runs), tagged with the board's key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from typing import TypeVar

from redis.crc import key_slot

Shard = TypeVar("Shard", bound=Hashable)

SESSION_PREFIX = "sessions:"
RATE_LIMIT_PREFIX = "ratelimit:"
VERSION_PREFIX = "version:"
RECOVERY_PREFIX = "recovery:"
PLAYER_PREFIX = "players:"
GAME_PREFIX = "games:"
LEADERBOARD_PREFIX = "leaderboards:survivor-"
BOARD_MEMBERS_PREFIX = "leaderboard-members:"
BOARD_SEASON_PREFIX = "leaderboard-season:"
BOARD_SEASONS_PREFIX = "leaderboard-seasons:"
BOARD_INDEXED_PREFIX = "leaderboard-indexed:"
BOARD_ASIDE_PREFIX = "leaderboard-aside:"
BANS_PREFIX = "leaderboard-bans:"
RUN_PREFIX = "leaderboard-run:"
BOARD_REACHED_PREFIX = "leaderboard-reached:"

PLAYER_INDEX = "player-idx"
GAME_INDEX = "game-idx"

# FT.CREATE arguments after the index name, exactly as API.md gives them.
INDEX_DEFINITIONS: dict[str, tuple[str, ...]] = {
    PLAYER_INDEX: (
        "ON", "JSON", "PREFIX", "1", PLAYER_PREFIX,
        "SCHEMA", "$.id", "AS", "id", "TEXT", "$.name", "AS", "name", "TEXT",
    ),
    GAME_INDEX: (
        "ON", "JSON", "PREFIX", "1", GAME_PREFIX,
        "SCHEMA", "$.id", "AS", "id", "TEXT",
    ),
}  # fmt: skip

# Enough candidates to find a tag in every slot range a master could own.
MAX_TAG_CANDIDATES = 1_000_000


def index_names(index: str, shard_tags: Sequence[str] | None) -> list[str]:
    """An index's name on each master: exactly `index` on a single Redis (API.md fixes it).

    Without a search coordinator an index sees only its own master's documents and lives in its
    name's slot, so a cluster has one per master, named with a hash tag in a slot that master owns.
    """
    if shard_tags is None:
        return [index]
    return [f"{index}:{{{tag}}}" for tag in shard_tags]


def shard_tags(masters: Collection[Shard], owner_of_slot: Callable[[int], Shard | None]) -> dict[Shard, str]:
    """For each master, the first of "0", "1", "2", ... whose hash slot it owns.

    The first, so every process given the same slot map picks the same tags, and the same index names.
    """
    tags: dict[Shard, str] = {}
    for candidate in range(MAX_TAG_CANDIDATES):
        if len(tags) == len(masters):
            break
        tag = str(candidate)
        owner = owner_of_slot(key_slot(tag.encode()))
        if owner is not None and owner in masters:
            tags.setdefault(owner, tag)
    missing = [master for master in masters if master not in tags]
    if missing:
        raise ValueError(f"no hash tag among the first {MAX_TAG_CANDIDATES} lands on {missing}: do they own slots?")
    return {master: tags[master] for master in masters}


SAVES_GROUP = "saves"
LEADERBOARD_GROUP = "leaderboard"
STREAM_PREFIX = "stream:"
# The audit of every admin write (services/gateway/admin.py): a stream capped at ADMIN_AUDIT_KEPT entries.
ADMIN_AUDIT = "stream:admin-audit"
# A hash of the workers' counts of settled commands, field `{group}:{outcome}`, read by GET /metrics.
EVENT_COUNTS = "metrics:events"


def session(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def rate_limit(rule: str, who: str) -> str:
    """A limit counted outside any partition (new sessions per address)."""
    return f"{RATE_LIMIT_PREFIX}{rule}:{who}"


def write_limit(partition: int, rule: str, who: str) -> str:
    """A write limit, counted in the partition its command is published to."""
    return f"{RATE_LIMIT_PREFIX}{{{partition}}}:{rule}:{who}"


def recovery_code(code_hash: str) -> str:
    """Which player a recovery code leads to, by the code's hash (services/gateway/recovery.py)."""
    return f"{RECOVERY_PREFIX}code:{code_hash}"


def recovery_player(player_id: str) -> str:
    """The hash of a player's current recovery code: only the code it names is valid."""
    return f"{RECOVERY_PREFIX}player:{player_id}"


def player(player_id: str) -> str:
    return PLAYER_PREFIX + player_id


def game(game_id: str) -> str:
    return GAME_PREFIX + game_id


def leaderboard(map_name: str) -> str:
    return LEADERBOARD_PREFIX + map_name


def live_top(board: str) -> str:
    """The stream the leaderboard workers announce `board`'s new top on. Its hash tag is the board's
    key (which has no braces of its own), so it lives in the board's slot: one script reads the one
    and appends to the other, on a Redis Cluster too."""
    return f"{STREAM_PREFIX}live:{{{board}}}"


def season_board(board: str, label: str) -> str:
    """A season's archive: every score admitted in that season, kept after it ends."""
    return f"{board}:season:{label}"


def all_time_board(board: str) -> str:
    """Each player's best over every season."""
    return f"{board}:all-time"


def board_members(board: str) -> str:
    """A hash, player id to that player's one member on `board`; in the board's slot."""
    return f"{BOARD_MEMBERS_PREFIX}{{{board}}}"


def season_marker(board: str) -> str:
    """The start (epoch ms) of the season the current board holds; in the board's slot."""
    return f"{BOARD_SEASON_PREFIX}{{{board}}}"


def board_seasons(board: str) -> str:
    """A sorted set of the board's season labels that have scores, scored by their start; in its slot."""
    return f"{BOARD_SEASONS_PREFIX}{{{board}}}"


def board_reached(board: str) -> str:
    """A hash, member to when it reached its score (epoch ms), which orders ties (shared/ties.lua); in
    the board's slot."""
    return f"{BOARD_REACHED_PREFIX}{{{board}}}"


def board_indexed(board: str) -> str:
    """Set once the members a board held before its member index are indexed (at worker start-up)."""
    return f"{BOARD_INDEXED_PREFIX}{{{board}}}"


def board_aside(board: str) -> str:
    """A hash of the players banned from `board` (services/leaderboard/handlers.py): id to the entry
    the ban took off it, as `{score} {member}` ("" when there was none), put back by an unban; in the
    board's slot, so a score's own script sees the ban."""
    return f"{BOARD_ASIDE_PREFIX}{{{board}}}"


def bans(partition: int) -> str:
    """The set of banned player ids whose commands go to `partition`: in the partition's slot, beside the
    stream their scores are admitted to."""
    return f"{BANS_PREFIX}{{{partition}}}"


def run(board: str, secret: str) -> str:
    """A verified run on `board` (a hash: its player, its start, and once used the command that used it),
    in the board's slot: one script checks it and writes the score. It expires after RUN_MAX_S."""
    return f"{RUN_PREFIX}{{{board}}}:{secret}"


def version(key: str) -> str:
    """The stream id of the command that last wrote `key`; its hash tag is `key` itself, so it lives
    in the same slot and one script can check it and write both."""
    return f"{VERSION_PREFIX}{{{key}}}"


def replication_mark(key: str) -> str:
    """Written by every replicated apply call, in `key`'s slot, so that its WAIT covers every earlier
    write on that master, even when none of its commands wrote (shared/worker.py); it expires soon."""
    return f"{STREAM_PREFIX}replicated:{{{hash_tag(key)}}}"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes of `key`: the text between its first `{` and the next `}` if not empty;
    else all of it."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else key


def command_stream(name: str, partition: int) -> str:
    return f"{STREAM_PREFIX}{{{partition}}}:{name}"


def reply(partition: int, event_id: str) -> str:
    return f"{STREAM_PREFIX}{{{partition}}}:reply:{event_id}"


def dead_letters(partition: int) -> str:
    return f"{STREAM_PREFIX}{{{partition}}}:dead-letter"


def event_count_field(group: str, outcome: str) -> str:
    return f"{group}:{outcome}"


def event_count_field_parts(name: str) -> tuple[str, str]:
    group, _, outcome = name.partition(":")
    return group, outcome
