"""Score submissions: one entry per player per board, and with seasons, an archive and an all-time best.

A score is applied by apply_commands.lua's operations (see there): `board.post` raises the player's
one entry (`ZADD GT`) or moves it to a new name with the better score, atomically with the board's
member index; `season.post` does that on the current board, rolling it over first when the score
is of a newer season than the board holds. A score's season is fixed by its stream entry id, so
every worker puts it in the same one however late it is applied. With seasons, one score is three
actions, each in its own key's slot: the current board (whose outcome answers the caller), and, as
follow-ups, its season's archive and the all-time board.

Every score also announces its board's top to the gateways' live listeners (`top.announce`, a
follow-up in the board's slot, applied once a batch per board and in the same script as the
board's scores, so no batch's change goes unannounced); each sweep announces every board's again,
for what reached a board some other way (a start-up's migration, a follow-up Redis refused).

An operator's commands (services/gateway/admin.py) come on the same stream, their `session` the
player they are about, so they are in order with that player's own scores. A ban adds the id to its
partition's set of bans (which the gateway checks before it admits a score) and, as follow-ups, takes
the player's entry off every board (each map's current board, its kept seasons' archives and all-time)
into that board's aside hash, which also marks the player banned there: a score already admitted is
refused on the board it reaches (BANNED, a 403). An unban puts the entries back. Removing an entry is
one board's ZREM, with its member index.

The gateway has already checked the caller; the checks are repeated here
because a stream entry is only as trustworthy as whoever could write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from redis.asyncio import Redis, RedisCluster

from shared import keys, seasons
from shared.protocol import (
    BANNED_FROM_BOARDS,
    LIVE_STREAM_MAXLEN,
    LIVE_TOP_SIZE,
    Event,
    EventType,
    Outcome,
    PoisonEvent,
    Reply,
    is_finite_number,
    owner_of,
    partition_of,
    run_token_parts,
)
from shared.settings import RunBounds, Settings
from shared.worker import APPLY_COMMANDS, Action, Handler, Prepare, RunCheck

RECORDED = Reply.message(200, "Score recorded")
NOT_HIGHER = Reply.message(200, "Score not higher than the current one; unchanged")
ANNOUNCED = Reply.message(200, "Top announced")  # a follow-up's, which answers no one
IF_BANNED = {Outcome.BANNED: BANNED_FROM_BOARDS}
BANNED = Reply.message(200, "Player banned")
UNBANNED = Reply.message(200, "Player unbanned")
MOVED = Reply.message(200, "Entries moved")  # a ban's or an unban's follow-up, which answers no one
REMOVED = Reply.message(200, "Entry removed")
NO_ENTRY = Reply.message(404, "No such entry on this leaderboard")
NEVER = "0"  # board.post's expiry: none
HERE = Path(__file__).parent
# The start-up migrations keep one entry per player by apply_commands.lua's own rule (keep_best).
INDEX_MEMBERS = APPLY_COMMANDS + (HERE / "index_members.lua").read_text()
CARRY_ALL_TIME = APPLY_COMMANDS + (HERE / "carry_all_time.lua").read_text()
CHUNK = 1000


def post(
    board: str, args: tuple[str, ...], at_ms: str, expire_at_ms: str = NEVER, also: tuple[Action, ...] = ()
) -> Action:
    return Action(
        "board.post",
        board,
        (*args, expire_at_ms, at_ms),
        if_true=RECORDED,
        if_false=NOT_HIGHER,
        refusals=IF_BANNED,
        extra_keys=companions_of(board),
        also=also,
    )


@lru_cache(maxsize=64)
def run_refusals(bounds: RunBounds) -> dict[Outcome, Reply]:
    """What a refused verified score answers, saying which check refused it."""
    return {
        Outcome.RUN_FOREIGN: Reply.message(403, "This run is another player's"),
        Outcome.RUN_USED: Reply.message(409, "This run has carried a score already: start a new run"),
        Outcome.RUN_UNKNOWN: Reply.message(410, "Unknown or expired run: start a new run"),
        Outcome.RUN_TOO_SHORT: Reply.message(422, f"The run is shorter than this board's minimum, {bounds.min_s:g} s"),
        Outcome.RUN_TOO_HIGH: Reply.message(
            422,
            f"The score is above what the run's time allows on this board: {bounds.per_s:g} a second "
            f"plus {bounds.base:g}",
        ),
    }


def verified(action: Action, event: Event, bounds: RunBounds, board: str, map_name: str, score: float) -> Action:
    """`action` checked against the event's run (a payload's `run`), when it has one; the board's key
    names it, so a run of another board is not found there (the gateway told that apart already)."""
    token = event.payload.get("run")
    if token is None:
        return action
    parts = run_token_parts(token) if isinstance(token, str) else None
    if parts is None or parts[0] != map_name:
        raise PoisonEvent("run must be a token of this board's")
    check = RunCheck(
        keys.run(board, parts[1]), event.session, event.admitted_ms,
        round(bounds.min_s * 1000), bounds.max_s * 1000, bounds.per_s, bounds.base, score,
    )  # fmt: skip
    action.run, action.refusals = check, {**action.refusals, **run_refusals(bounds)}
    return action


@lru_cache(maxsize=64)
def announce(board: str) -> Action:
    return Action(
        "top.announce",
        board,
        (str(LIVE_TOP_SIZE), str(LIVE_STREAM_MAXLEN)),
        if_true=ANNOUNCED,
        if_false=ANNOUNCED,
        extra_keys=(keys.live_top(board), keys.board_reached(board)),
    )


def sweep(settings: Settings) -> list[Action]:
    return [announce(keys.leaderboard(name)) for name in settings.leaderboard_maps]


@lru_cache(maxsize=64)
def kept_bounds(mode: str, kept: int, season: seasons.Season) -> tuple[int, int]:
    """The start of the oldest season still kept while `season` is current, and when `season`'s
    archive expires: the end of the last season it is among the `kept` finished ones."""
    return seasons.seasons_before(mode, season, kept).start_ms, seasons.seasons_after(mode, season, kept).end_ms


def submit_handler(settings: Settings) -> Handler:
    maps = {keys.leaderboard(name): name for name in settings.leaderboard_maps}
    mode, kept = settings.leaderboard_season, settings.leaderboard_seasons_kept

    def write(board: str, args: tuple[str, ...], event: Event) -> Action:
        """The score's writes; its time, which orders ties, is its stream entry's."""
        at_ms = str(event.admitted_ms)
        if mode == "none":
            return post(board, args, at_ms, also=(announce(board),))
        season = seasons.season_at(mode, event.admitted_ms)
        oldest_kept_ms, archive_expires_ms = kept_bounds(mode, kept, season)
        companions = (keys.season_marker(board), keys.board_seasons(board), keys.board_reached(board))
        return Action(
            "season.post",
            board,
            (*args, season.label, str(season.start_ms), str(oldest_kept_ms), at_ms),
            if_true=RECORDED,
            if_false=NOT_HIGHER,
            refusals=IF_BANNED,
            extra_keys=(keys.board_members(board), *companions, keys.board_aside(board)),
            also=(
                announce(board),
                post(keys.season_board(board, season.label), args, at_ms, str(archive_expires_ms)),
                post(keys.all_time_board(board), args, at_ms),
            ),
        )

    def handle(event: Event) -> Action:
        entry = event.payload
        if not isinstance(entry, dict) or entry.get("key") not in maps:
            raise PoisonEvent("score must name a configured leaderboard")
        member, score = entry.get("member"), entry.get("score")
        if not isinstance(member, str) or owner_of(member)[1] != event.session:
            raise PoisonEvent("member must be `{name}-{the caller's session id}`")
        if not is_finite_number(score) or not settings.score_min <= score <= settings.score_max:
            raise PoisonEvent("score must be a finite number within the configured bounds")
        board = entry["key"]
        map_name = maps[board]
        if settings.verified(map_name) and entry.get("run") is None:
            raise PoisonEvent("this board takes a score only with a run (LEADERBOARD_VERIFIED)")
        action = write(board, (event.session, member, repr(score)), event)
        return verified(action, event, settings.runs[map_name], board, map_name, score)

    return handle


def run_handler(settings: Settings) -> Handler:
    """A verified run starts at its command's stream entry time: Redis's clock, the one its score's
    time is taken on (the same partition's stream), and the one `startedAt` shows."""
    maps = {keys.leaderboard(name): name for name in settings.leaderboard_maps}

    def handle(event: Event) -> Action:
        entry = event.payload
        board = entry.get("key") if isinstance(entry, dict) else None
        token = entry.get("run") if isinstance(entry, dict) else None
        parts = run_token_parts(token) if isinstance(token, str) else None
        if board not in maps or parts is None or parts[0] != maps[board]:
            raise PoisonEvent("a run must name a configured leaderboard and a token of its map")
        started = event.admitted_ms
        expires = started + settings.runs[maps[board]].max_s * 1000
        started_reply = Reply(200, {"run": token, "startedAt": started})
        args = (event.session, str(started), str(expires))
        return Action("run.start", keys.run(board, parts[1]), args, if_true=started_reply, if_false=started_reply)

    return handle


ERASED = Reply.message(200, "Account deleted")


def erase_handler(settings: Settings) -> Handler:
    """Everything held about the caller's id, wherever it lives: each a follow-up in its own slot (on a
    cluster, on every master that holds some), the session last to answer. Every step is idempotent,
    so a retry finishes what a lost master left undone; and each leaves a tombstone
    (apply_commands.lua's ERASED), so no write admitted before the erase brings anything back."""
    # Past the streams' retention every command admitted before the erase is trimmed, and long past its deadline.
    tombstone_ms = str(settings.stream_retention_ms)

    def erase(action: str, key: str, args: tuple[str, ...], *extra: str) -> Action:
        return Action(action, key, args, if_true=ERASED, if_false=ERASED, extra_keys=extra)

    def handle(event: Event) -> Action:
        player = event.session
        code = event.payload.get("recovery") if isinstance(event.payload, dict) else None
        steps = [
            erase("account.document", document, (tombstone_ms,), keys.version(document))
            for document in (keys.player(player), keys.game(player))
        ]
        steps += (
            erase("account.board", key, (player, tombstone_ms), *companions_of(key))
            for key, _ in every_board(settings, event.admitted_ms)
        )
        steps += (announce(board) for board in boards_of(settings))
        steps.append(erase("DEL", keys.recovery_player(player), ()))
        if isinstance(code, str) and code:
            steps.append(erase("account.code", keys.recovery_code(code), (player,)))
        return Action("DEL", keys.session(player), (), if_true=ERASED, if_false=ERASED, also=tuple(steps))

    return handle


def companions_of(board: str) -> tuple[str, str, str]:
    """What board.post, board.ban, board.unban and account.board change beside a board: its member
    index, its reached times and its aside hash, all in its slot."""
    return keys.board_members(board), keys.board_reached(board), keys.board_aside(board)


def every_board(settings: Settings, at_ms: int) -> list[tuple[str, str]]:
    """Every board a player may have an entry on at `at_ms`, each with when it expires (board.post's
    expiry): each map's current board and, with seasons, all-time and the archives still kept."""
    mode, kept = settings.leaderboard_season, settings.leaderboard_seasons_kept
    kept_seasons = [] if mode == "none" else seasons.kept(mode, seasons.season_at(mode, at_ms), kept)
    boards: list[tuple[str, str]] = []
    for board in boards_of(settings):
        boards.append((board, NEVER))
        boards += ((keys.season_board(board, s.label), str(kept_bounds(mode, kept, s)[1])) for s in kept_seasons)
        if kept_seasons:
            boards.append((keys.all_time_board(board), NEVER))
    return boards


def moderation_handler(settings: Settings, *, ban: bool) -> Handler:
    """A ban (or unban) of the event's player: its partition's set of bans, then every board's entry."""
    current = set(boards_of(settings))
    operation, done = ("board.ban", BANNED) if ban else ("board.unban", UNBANNED)

    def handle(event: Event) -> Action:
        player = event.session
        if not player:
            raise PoisonEvent("a ban must name a player")
        moves = tuple(
            Action(
                operation,
                board,
                (player, expires),
                if_true=MOVED,
                if_false=MOVED,
                extra_keys=companions_of(board),
            )
            for board, expires in every_board(settings, event.admitted_ms)
        )
        bans = keys.bans(partition_of(player, settings.stream_partitions))
        return Action(
            "SADD" if ban else "SREM", bans, (player,), if_true=done, if_false=done,
            also=(*moves, *(announce(board) for board in sorted(current))),
        )  # fmt: skip

    return handle


def remove_handler(settings: Settings) -> Handler:
    """One entry off one board: a current board, its all-time board or a season's archive."""
    current = set(boards_of(settings))

    def handle(event: Event) -> Action:
        entry = event.payload
        key, member = (entry.get("key"), entry.get("member")) if isinstance(entry, dict) else (None, None)
        if not isinstance(key, str) or not is_board(settings, key):
            raise PoisonEvent("removal must name a configured leaderboard, its all-time board or a season's")
        if not isinstance(member, str) or owner_of(member)[1] != event.session:
            raise PoisonEvent("removal must name a member `{name}-{id}` of the event's player")
        return Action(
            "board.remove", key, (member, event.session), if_true=REMOVED, if_false=NO_ENTRY,
            extra_keys=companions_of(key)[:2], also=(announce(key),) if key in current else (),
        )  # fmt: skip

    return handle


def boards_of(settings: Settings) -> list[str]:
    return [keys.leaderboard(name) for name in settings.leaderboard_maps]


def is_board(settings: Settings, key: str) -> bool:
    """A configured board's key, or (with seasons) its all-time board's or a season's archive's."""
    mode = settings.leaderboard_season
    for board in boards_of(settings):
        if key == board:
            return True
        if mode != "none":
            if key == keys.all_time_board(board):
                return True
            label = key.removeprefix(keys.season_board(board, ""))
            if label != key and seasons.parse_label(mode, label) is not None:
                return True
    return False


def handlers(settings: Settings) -> Mapping[EventType, Handler]:
    return {
        EventType.SCORE_SUBMIT: submit_handler(settings),
        EventType.BOARD_BAN: moderation_handler(settings, ban=True),
        EventType.BOARD_UNBAN: moderation_handler(settings, ban=False),
        EventType.BOARD_REMOVE: remove_handler(settings),
        EventType.RUN_START: run_handler(settings),
        EventType.ACCOUNT_ERASE: erase_handler(settings),
    }


def index_members(settings: Settings) -> Prepare:
    """At start-up: index the members of boards written before one entry per player (once per board)
    and, when seasons are turned on for a board that has scores, carry them into its all-time board.

    Chunk by chunk (a script each, so Redis is never held long), every member is recorded as its
    player's; a player with two entries keeps one, under the name already indexed, with the better
    score. Idempotent, and safe beside live workers: a score posted meanwhile indexes its player, and
    the chunk that meets that player's older entries merges them into the new one.
    """

    async def prepare(redis: Redis | RedisCluster) -> None:
        index = redis.register_script(INDEX_MEMBERS)
        for name in settings.leaderboard_maps:
            board = keys.leaderboard(name)
            script_keys = [board, keys.board_members(board), keys.board_indexed(board)]
            cursor = "0"
            while True:
                found = await index(keys=script_keys, args=[cursor, CHUNK])
                cursor = found.decode() if isinstance(found, bytes) else str(found)
                if cursor in ("0", "done"):
                    break
            if settings.leaderboard_season != "none" and not await redis.exists(keys.season_marker(board)):
                await carry_into_all_time(redis, board)

    return prepare


async def carry_into_all_time(redis: Redis | RedisCluster, board: str) -> None:
    """A board that has never had a season (its scores are from before seasons were turned on): its
    scores join all-time, which a season's roll-over would otherwise leave without them. All-time is
    in another slot, so the board is read a chunk at a time and each chunk written by a script there.
    Idempotent (the better score wins); run again at each start until the board's first season."""
    carry = redis.register_script(CARRY_ALL_TIME)
    all_time = keys.all_time_board(board)
    cursor = 0
    while True:
        cursor, chunk = await redis.zscan(board, cursor, count=CHUNK)
        if chunk:
            await carry(keys=[all_time, keys.board_members(all_time)], args=[v for pair in chunk for v in pair])
        if cursor == 0:
            break
