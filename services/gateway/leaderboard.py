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

from pydantic import BaseModel, Field
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
    ScoreBody,
    Seasons,
)
from services.gateway.responses import json_response
from services.gateway.routing import Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys, seasons
from shared.protocol import EventType, as_number, now_ms, owner_of
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
NO_ENTRY = {"status": 404, "message": "You have no entry on this leaderboard"}


@lru_cache(maxsize=8)
def boards_of(maps: tuple[str, ...]) -> tuple[str, ...]:
    """Cached: every board request checks its key against these."""
    return tuple(keys.leaderboard(name) for name in maps)


def check_board(settings: Settings, key: str) -> None:
    boards = boards_of(settings.leaderboard_maps)
    if key not in boards:
        raise HTTPException(400, f"Unknown leaderboard {key[:80]!r}; expected one of {', '.join(boards)}")


async def submit(commands: CommandBus, caller: str, address: str, key: str, score: float, member: str) -> Response:
    settings = commands.settings
    check_board(settings, key)
    name, owner = owner_of(member)
    if owner != caller:
        raise HTTPException(403, "member must be `{name}-{your session id}`")
    if not MEMBER_NAME.fullmatch(name):  # not .match: `$` also matches before a trailing newline
        raise HTTPException(400, f"The name in member must be {NAME_RULE}")
    if not settings.score_min <= score <= settings.score_max:
        raise HTTPException(400, f"score must be between {settings.score_min:g} and {settings.score_max:g}")
    payload = {"key": key, "score": as_number(score), "member": member}
    reply = await commands.call(EventType.SCORE_SUBMIT, caller, address, payload)
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
    """Record a score: your one entry on the board takes your best score and the name you post under."""
    body: ScoreBody = call.body
    return await submit(call.state.bus, call.session, client_address(call.scope), body.key, body.score, body.member)


class PageQuery(BaseModel):
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
          response_model=Message),
    Route("GET", "/api/leaderboard/{key}", top_scores, "top_scores", query=PageQuery, tags=TAGS,
          response_model=list[LeaderboardEntry]),
    Route("GET", "/api/leaderboard/{key}/me", my_entry, "my_entry", query=AroundQuery, session=True, tags=TAGS,
          response_model=AroundMe),
    Route("GET", "/api/leaderboard/{key}/seasons", board_seasons, "board_seasons", tags=TAGS, response_model=Seasons),
]  # fmt: skip
