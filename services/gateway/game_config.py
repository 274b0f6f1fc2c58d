"""`GET /api/config`: the server's rules the game must follow (maps, board keys, the name rule, the
season and when it ends, each board's verified-run bounds), so the game reads them instead of keeping
copies that could drift apart."""

from __future__ import annotations

from starlette.responses import Response

from services.gateway.layers import Call
from services.gateway.models import (
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    NAME_RULE,
    GameConfig,
    NameRule,
    RunBoundsInfo,
    RunsInfo,
    SeasonInfo,
)
from services.gateway.responses import json_response
from services.gateway.routing import Route
from shared import keys, seasons
from shared.protocol import now_ms
from shared.settings import Settings


def game_config(settings: Settings) -> GameConfig:
    return GameConfig(
        maps=list(settings.leaderboard_maps),
        leaderboards={name: keys.leaderboard(name) for name in settings.leaderboard_maps},
        name=NameRule(pattern=NAME_PATTERN, maxLength=NAME_MAX_LENGTH, description=NAME_RULE),
        scoreMin=settings.score_min,
        scoreMax=settings.score_max,
        season=season_info(settings.leaderboard_season),
        runs=runs_info(settings),
    )


def runs_info(settings: Settings) -> RunsInfo:
    bounds = {
        name: RunBoundsInfo(minS=run.min_s, maxS=run.max_s, scorePerS=run.per_s, scoreBase=run.base)
        for name, run in settings.runs.items()
    }
    return RunsInfo(verified=[name for name in settings.leaderboard_maps if settings.verified(name)], bounds=bounds)


def season_info(mode: str) -> SeasonInfo:
    if mode == "none":
        return SeasonInfo(mode=mode, current=None, endsAt=None)
    season = seasons.season_at(mode, now_ms())
    return SeasonInfo(mode=mode, current=season.label, endsAt=season.end_ms)


async def config(call: Call) -> Response:
    """The maps, their leaderboard keys, and the rule a player's name must follow. Public."""
    return json_response(200, game_config(call.state.settings).model_dump())


ROUTES = [Route("GET", "/api/config", config, "config", tags=("game",), response_model=GameConfig, responses={})]
