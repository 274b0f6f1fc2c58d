"""Leaderboards: submissions go to the leaderboard worker; pages, "around me" and seasons are read
straight from Redis.

Every entry a read returns carries its 1-based rank beside the seed's `value` and `score`. With
seasons (LEADERBOARD_SEASON), the board's own key is the current season: until the first score of
a new season rolls it over (services/leaderboard/handlers.py), it still holds the last one, and
reads answer it as empty. A past season is read from its archive with `?season=<label>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.gateway.commands import CommandBus
from services.gateway.layers import Call
from services.gateway.models import (
    NAME_PATTERN,
    NAME_RULE,
    AroundMe,
    LeaderboardEntry,
    Message,
    Run,
    ScoreBody,
    Seasons,
)
from services.gateway.responses import json_response
from services.gateway.routing import ERRORS, Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys, seasons
from shared.protocol import BANNED_FROM_BOARDS, EventType, as_number, new_run_token, now_ms, owner_of, run_token_parts
from shared.settings import Settings

TAGS = ("leaderboard",)

MEMBER_NAME = re.compile(NAME_PATTERN)
DEFAULT_COUNT = 10
DEFAULT_AROUND = 5
MAX_AROUND = 50
# Past this a count or offset is refused (400), not clamped: no board is that long. A count above
# LEADERBOARD_MAX_COUNT is clamped to it, as the seed's route did.
MAX_POSITION = 1_000_000_000
EMPTY = {"status": 404, "message": "No leaderboard entries found"}
UNKNOWN_RUN = "Unknown or expired run: start a new run"
# A verified score's answers beside every route's: its run used (409), unknown or expired (410), implausible (422).
SCORE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, **{code: {"model": Message} for code in (409, 410, 422)}}
NO_ENTRY = {"status": 404, "message": "You have no entry on this leaderboard"}


@lru_cache(maxsize=8)
def boards_of(maps: tuple[str, ...]) -> tuple[str, ...]:
    """Cached: every board request checks its key against these."""
    return tuple(keys.leaderboard(name) for name in maps)


def check_board(settings: Settings, key: str) -> None:
    boards = boards_of(settings.leaderboard_maps)
    if key not in boards:
        raise HTTPException(400, f"Unknown leaderboard {key[:80]!r}; expected one of {', '.join(boards)}")


def map_of(key: str) -> str:
    return key.removeprefix(keys.LEADERBOARD_PREFIX)


async def submit(
    commands: CommandBus, caller: str, address: str, key: str, score: float, member: str, run: str | None = None
) -> Response:
    """A score, with its run when it has one: the worker checks the run and writes the score in one
    atomic step; what can be told here without Redis is refused here."""
    settings = commands.settings
    check_board(settings, key)
    name, owner = owner_of(member)
    if owner != caller:
        raise HTTPException(403, "member must be `{name}-{your session id}`")
    if not MEMBER_NAME.fullmatch(name):  # not .match: `$` also matches before a trailing newline
        raise HTTPException(400, f"The name in member must be {NAME_RULE}")
    if not settings.score_min <= score <= settings.score_max:
        raise HTTPException(400, f"score must be between {settings.score_min:g} and {settings.score_max:g}")
    # With seasons, a banned player's score would reach the archive of a season that began after the
    # ban (its follow-up has no ban to see there): it is refused before it is published. Without, the
    # worker refuses it on the board (BANNED), and the hot path spends no read on it.
    if settings.leaderboard_season != "none" and await commands.banned(caller):
        raise HTTPException(403, BANNED_FROM_BOARDS.body["message"])
    payload = {"key": key, "score": as_number(score), "member": member}
    if run is not None:
        await check_run_board(commands.store, settings, key, run)
        payload["run"] = run
    elif settings.verified(map_of(key)):
        raise HTTPException(403, "This leaderboard takes a score only with a run: POST /api/leaderboard/{key}/runs")
    reply = await commands.call(EventType.SCORE_SUBMIT, caller, address, payload)
    return json_response(reply.status, reply.body)


async def check_run_board(store: Store, settings: Settings, key: str, run: str) -> None:
    """A run of another board is 403 when it exists there, and, as what no server issued, 410."""
    parts = run_token_parts(run)
    if parts is None or parts[0] not in settings.leaderboard_maps:
        raise HTTPException(410, UNKNOWN_RUN)
    run_map, secret = parts
    if run_map != map_of(key):
        if await store.exists(keys.run(keys.leaderboard(run_map), secret)):
            raise HTTPException(403, "This run is another leaderboard's")
        raise HTTPException(410, UNKNOWN_RUN)


async def start_run(commands: CommandBus, caller: str, address: str, key: str) -> Response:
    """A verified run on the board, started now on Redis's clock, through the leaderboard worker."""
    check_board(commands.settings, key)
    payload = {"key": key, "run": new_run_token(map_of(key))}
    reply = await commands.call(EventType.RUN_START, caller, address, payload)
    return json_response(reply.status, reply.body)


def current_season(settings: Settings) -> seasons.Season | None:
    """The season now, on this gateway's clock; None without seasons."""
    mode = settings.leaderboard_season
    return None if mode == "none" else seasons.season_at(mode, now_ms())


def ranked(rows: Sequence[tuple[str, int | float]], first_rank: int) -> list[dict[str, Any]]:
    """Entries in the list shape, each with its 1-based rank; `first_rank` is the first row's."""
    return [{"value": member, "score": score, "rank": rank} for rank, (member, score) in enumerate(rows, first_rank)]


async def top_entries(
    store: Store, settings: Settings, key: str, count: int = DEFAULT_COUNT, offset: int = 0
) -> list[dict[str, Any]]:
    """A page of a board's current season, ranked: the `top` list (also for live updates)."""
    season = current_season(settings)
    if season is None:
        rows = await store.top(key, count, offset)
    else:
        rows = await store.current_top(key, keys.season_marker(key), season.start_ms, count, offset)
    return ranked(rows, offset + 1)


async def page(
    store: Store, settings: Settings, key: str, count: int, offset: int = 0, season: str | None = None
) -> Response:
    check_board(settings, key)
    count = min(count, settings.leaderboard_max_count)
    if season is None:
        entries = await top_entries(store, settings, key, count, offset)
    else:
        archive = keys.season_board(key, past_season(settings, season).label)
        entries = ranked(await store.top(archive, count, offset), offset + 1)
        if not entries and not await store.exists(archive):
            return json_response(404, {"status": 404, "message": f"No season {season} on this leaderboard"})
    return json_response(200, entries) if entries else json_response(404, EMPTY)


def past_season(settings: Settings, label: str) -> seasons.Season:
    """The season `label` names: 404 without seasons, 400 for what is no label of this board's seasons."""
    mode = settings.leaderboard_season
    if mode == "none":
        raise HTTPException(404, "This leaderboard has no seasons")
    found = seasons.parse_label(mode, label)
    if found is None:
        example = seasons.season_at(mode, now_ms()).label
        raise HTTPException(400, f"season must be a {mode} season's label, such as {example}")
    return found


async def around_me(store: Store, settings: Settings, key: str, caller: str, around: int) -> Response:
    check_board(settings, key)
    season = current_season(settings)
    marker, start_ms = (None, 0) if season is None else (keys.season_marker(key), season.start_ms)
    found = await store.around(key, keys.board_members(key), caller, around, marker, start_ms)
    if found is None:
        return json_response(404, NO_ENTRY)
    rank, first, rows = found
    entries = ranked(rows, first + 1)
    mine = entries[rank - first]
    return json_response(200, {"rank": rank + 1, "score": mine["score"], "value": mine["value"], "around": entries})


async def submit_score(call: Call) -> Response:
    """Record a score: your one entry on the board takes your best score and the name you post under.
    With `run`, the run is checked first (403 another's or another board's, 409 used, 410 unknown or
    expired, 422 too short or a score above its bound), and a board in LEADERBOARD_VERIFIED needs one."""
    body: ScoreBody = call.body
    address = client_address(call.scope)
    return await submit(call.state.bus, call.session, address, body.key, body.score, body.member, body.run)


async def new_run(call: Call) -> Response:
    """Start a verified run on the board: its token goes with the run's score, once, within RUN_MAX_S."""
    return await start_run(call.state.bus, call.session, client_address(call.scope), call.params["key"])


class PageQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    count: int = Field(DEFAULT_COUNT, ge=1, le=MAX_POSITION)
    offset: int = Field(0, ge=0, le=MAX_POSITION)
    season: str | None = Field(None, max_length=40, description="A past season's label; the current one without")


async def top_scores(call: Call) -> Response:
    """`count` entries from rank `offset + 1`, highest first, of the current season or of `season`;
    public, as a leaderboard is."""
    query: PageQuery = call.query
    return await page(
        call.state.store, call.state.settings, call.params["key"], query.count, query.offset, query.season
    )


class AroundQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    around: int = Field(DEFAULT_AROUND, ge=0, le=MAX_AROUND, description="Entries above and below yours")


async def my_entry(call: Call) -> Response:
    """Your entry, found by your session id whatever name you posted under, and up to `around`
    entries above and below it."""
    store, settings = call.state.store, call.state.settings
    return await around_me(store, settings, call.params["key"], call.session, call.query.around)


async def board_seasons(call: Call) -> Response:
    """The current season and the seasons with scores still kept, newest first."""
    settings: Settings = call.state.settings
    store: Store = call.state.store
    key = call.params["key"]
    check_board(settings, key)
    season = current_season(settings)
    if season is None:
        raise HTTPException(404, "This leaderboard has no seasons")
    oldest = seasons.seasons_before(settings.leaderboard_season, season, settings.leaderboard_seasons_kept)
    labels = await store.seasons(keys.board_seasons(key), oldest.start_ms)
    return json_response(200, {"current": season.label, "seasons": labels})


ROUTES = [
    Route("POST", "/api/leaderboard", submit_score, "submit_score", body=ScoreBody, session=True, tags=TAGS,
          response_model=Message, responses=SCORE_ERRORS),
    Route("GET", "/api/leaderboard/{key}", top_scores, "top_scores", query=PageQuery, tags=TAGS,
          response_model=list[LeaderboardEntry]),
    Route("GET", "/api/leaderboard/{key}/me", my_entry, "my_entry", query=AroundQuery, session=True, tags=TAGS,
          response_model=AroundMe),
    Route("GET", "/api/leaderboard/{key}/seasons", board_seasons, "board_seasons", tags=TAGS, response_model=Seasons),
    Route("POST", "/api/leaderboard/{key}/runs", new_run, "new_run", session=True, tags=TAGS, response_model=Run),
]  # fmt: skip
