"""Leaderboards: submissions go to the leaderboard worker, top-N reads straight to Redis."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import Response

from services.gateway.bodies import StrictJSONRoute
from services.gateway.commands import CommandBus
from services.gateway.dependencies import ERRORS, Address, Bus, Redis, SessionId
from services.gateway.hotpath import Call, fast, parse_body
from services.gateway.models import NAME_PATTERN, NAME_RULE, LeaderboardEntry, Message, ScoreBody
from services.gateway.responses import json_response
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys
from shared.protocol import EventType
from shared.settings import Settings

router = APIRouter(prefix="/api/leaderboard", tags=["leaderboard"], route_class=StrictJSONRoute)

MEMBER_NAME = re.compile(NAME_PATTERN)
DEFAULT_COUNT = 10
COUNT_ONLY = re.compile(rb"count=([1-9][0-9]{0,8})")  # the fast path's query; anything else goes to FastAPI
Count = Annotated[int, Query(ge=1)]
EMPTY = {"status": 404, "message": "No leaderboard entries found"}


def check_board(settings: Settings, key: str) -> None:
    boards = [keys.leaderboard(name) for name in settings.leaderboard_maps]
    if key not in boards:
        raise HTTPException(400, f"Unknown leaderboard {key[:80]!r}; expected one of {', '.join(boards)}")


async def submit(commands: CommandBus, caller: str, address: str, key: str, score: float, member: str) -> Response:
    settings = commands.settings
    check_board(settings, key)
    name, _, owner = member.partition("-")
    if owner != caller:
        raise HTTPException(403, "member must be `{name}-{your session id}`")
    if not MEMBER_NAME.fullmatch(name):  # not .match: `$` also matches before a trailing newline
        raise HTTPException(400, f"The name in member must be {NAME_RULE}")
    if not settings.score_min <= score <= settings.score_max:
        raise HTTPException(400, f"score must be between {settings.score_min:g} and {settings.score_max:g}")
    payload = {"key": key, "score": as_number(score), "member": member}
    reply = await commands.call(EventType.SCORE_SUBMIT, caller, address, payload)
    return json_response(reply.status, reply.body)


async def top(store: Store, settings: Settings, key: str, count: int) -> Response:
    check_board(settings, key)
    rows = await store.top(key, min(count, settings.leaderboard_max_count))
    if not rows:
        return json_response(404, EMPTY)
    return json_response(200, [{"value": member, "score": as_number(score)} for member, score in rows])


async def submit_fast(call: Call) -> Response | None:
    body = parse_body(ScoreBody, call)
    if body is None:
        return None
    return await submit(call.state.bus, call.caller, client_address(call.scope), body.key, body.score, body.member)


@router.post("", response_model=Message, responses=ERRORS)
@fast(submit_fast)
async def submit_score(body: ScoreBody, commands: Bus, caller: SessionId, address: Address) -> Response:
    """Record a score with `ZADD GT`: only a personal best changes the board, and a lower one is not an error."""
    return await submit(commands, caller, address, body.key, body.score, body.member)


async def top_fast(call: Call) -> Response | None:
    query: bytes = call.scope["query_string"]
    count = COUNT_ONLY.fullmatch(query) if query else None
    if query and count is None:
        return None
    settings = call.state.settings
    return await top(call.state.store, settings, call.params["key"], int(count[1]) if count else DEFAULT_COUNT)


@router.get("/{key}", response_model=list[LeaderboardEntry], responses=ERRORS)
@fast(top_fast)
async def top_scores(key: str, store: Redis, request: Request, count: Count = DEFAULT_COUNT) -> Any:
    """The top `count` entries, highest first; public, as a leaderboard is."""
    return await top(store, request.app.state.settings, key, count)


def as_number(score: float) -> int | float:
    """1200, not 1200.0: the shape a JavaScript client of the seed's server saw."""
    return int(score) if score.is_integer() else score
