"""Player and game saves: writes go to the saves worker through its stream, reads straight to Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from starlette.responses import Response

from services.gateway.commands import CommandBus
from services.gateway.limits import StrictJSONRoute
from services.gateway.models import (
    ID_PATTERN,
    NAME_PATTERN,
    PLAYER_NAME,
    GameStateBody,
    Message,
    PlayerStateBody,
    SearchResult,
    count_values,
)
from services.gateway.sessions import Address, SessionId
from shared import keys
from shared.connection import ensure_indexes
from shared.pipelined import PipelinedRedis
from shared.protocol import EventType

router = APIRouter(prefix="/api", tags=["saves"], route_class=StrictJSONRoute)

NOT_FOUND = {"status": 404, "message": "Not Found"}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 413, 429, 503, 504)
}


@dataclass(frozen=True)
class Kind:
    noun: str
    field: str
    key: Callable[[str], str]
    index: str
    create: EventType
    update: EventType
    public_fields: tuple[str, ...]  # also what the search index holds, bounded by save()


PLAYERS = Kind(
    "Player",
    "playerData",
    keys.player,
    keys.PLAYER_INDEX,
    EventType.PLAYER_CREATE,
    EventType.PLAYER_UPDATE,
    ("id", "name"),
)
GAMES = Kind("Game", "gameData", keys.game, keys.GAME_INDEX, EventType.GAME_CREATE, EventType.GAME_UPDATE, ("id",))


async def bus(request: Request) -> CommandBus:
    commands: CommandBus = request.app.state.bus
    return commands


async def redis(request: Request) -> Redis:
    client: Redis = request.app.state.redis
    return client


async def hot(request: Request) -> PipelinedRedis:
    client: PipelinedRedis = request.app.state.hot
    return client


def json_response(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def save(
    commands: CommandBus, kind: Kind, caller: str, address: str, data: dict[str, Any], *, update: bool
) -> Response:
    """`data` is a validated document: a JSON object with an `id` of the right shape, first.

    The hot path and the FastAPI routes both check the rest here, so they answer alike.
    """
    if data["id"] != caller:
        raise HTTPException(403, f"{kind.field}.id must be your own session id")
    if "name" in kind.public_fields and "name" in data and not is_player_name(data["name"]):
        raise HTTPException(400, f"{kind.field}.name must be 1 to 32 letters, digits or underscores")
    settings = commands.settings
    values = count_values(data, settings.max_json_depth)
    if values is None:
        raise HTTPException(400, f"{kind.field} nests deeper than {settings.max_json_depth} levels")
    if values > settings.max_json_values:
        raise HTTPException(413, f"{kind.field} holds more than {settings.max_json_values} JSON values")
    reply = await commands.call(kind.update if update else kind.create, caller, address, data)
    return json_response(reply.status, reply.body)


def is_player_name(name: object) -> bool:
    return isinstance(name, str) and PLAYER_NAME.fullmatch(name) is not None  # fullmatch: no trailing newline


async def read(client: PipelinedRedis, kind: Kind, caller: str, document_id: str) -> Response:
    if document_id != caller:
        raise HTTPException(403, f"You may read only your own {kind.noun.lower()} state")
    raw = await client.execute("JSON.GET", kind.key(document_id))
    if raw is None:
        return json_response(404, NOT_FOUND)
    return Response(raw, media_type="application/json")


def escape(term: str) -> str:
    """Backslash every non-alphanumeric character, so a term can only ever match itself."""
    return "".join(ch if ch.isalnum() else f"\\{ch}" for ch in term)


async def search(client: Redis, kind: Kind, caller: str, limit: int, **terms: str | None) -> dict[str, Any]:
    clauses = [f"@{field}:({escape(value)})" for field, value in terms.items() if value]
    if not clauses:
        raise HTTPException(400, f"Give at least one of: {', '.join(terms)}")
    query = ("FT.SEARCH", kind.index, " ".join(clauses), "VERBATIM", "LIMIT", 0, limit, "DIALECT", 2)
    try:
        raw = await client.execute_command(*query)
    except ResponseError as error:
        if "no such index" not in str(error):
            raise
        await ensure_indexes(client)  # Redis came back empty: the index goes with the data
        raw = await client.execute_command(*query)
    documents = []
    for hit in raw[b"results"]:
        value = orjson.loads(hit[b"extra_attributes"][b"$"])
        if value.get("id") != caller:  # another player's save: only what the leaderboard shows
            value = {field: value[field] for field in kind.public_fields if field in value}
        documents.append({"id": hit[b"id"].decode(), "value": value})
    return {"total": raw[b"total_results"], "documents": documents}


Bus = Annotated[CommandBus, Depends(bus)]
Client = Annotated[Redis, Depends(redis)]
Hot = Annotated[PipelinedRedis, Depends(hot)]
IdTerm = Annotated[str | None, Query(pattern=ID_PATTERN)]
NameTerm = Annotated[str | None, Query(pattern=NAME_PATTERN)]


@router.get("/playerstate/search", response_model=SearchResult, responses=ERRORS)
async def search_players(
    client: Client, caller: SessionId, request: Request, name: NameTerm = None, id: IdTerm = None
) -> Any:
    """Full-text search on `player-idx`; other players' saves show only their id and name."""
    return await search(client, PLAYERS, caller, request.app.state.settings.search_limit, id=id, name=name)


@router.get("/playerstate/{player_id}", responses=ERRORS)
async def read_player(client: Hot, caller: SessionId, player_id: str) -> Response:
    """Your own player save, as you stored it."""
    return await read(client, PLAYERS, caller, player_id)


@router.post("/playerstate", response_model=Message, responses=ERRORS)
async def create_player(body: PlayerStateBody, commands: Bus, caller: SessionId, address: Address) -> Response:
    """Create or replace your player save."""
    return await save(commands, PLAYERS, caller, address, body.playerData.as_json(), update=False)


@router.patch("/playerstate", response_model=Message, responses=ERRORS)
async def update_player(body: PlayerStateBody, commands: Bus, caller: SessionId, address: Address) -> Response:
    """Replace your player save if it exists; 404 tells the client to POST instead."""
    return await save(commands, PLAYERS, caller, address, body.playerData.as_json(), update=True)


@router.get("/gamestate/search", response_model=SearchResult, responses=ERRORS)
async def search_games(client: Client, caller: SessionId, request: Request, id: IdTerm = None) -> Any:
    """Search on `game-idx`, which indexes `id` only."""
    return await search(client, GAMES, caller, request.app.state.settings.search_limit, id=id)


@router.get("/gamestate/{game_id}", responses=ERRORS)
async def read_game(client: Hot, caller: SessionId, game_id: str) -> Response:
    """Your own game state, as you stored it."""
    return await read(client, GAMES, caller, game_id)


@router.post("/gamestate", response_model=Message, responses=ERRORS)
async def create_game(body: GameStateBody, commands: Bus, caller: SessionId, address: Address) -> Response:
    """Create or replace your game state."""
    return await save(commands, GAMES, caller, address, body.gameData.as_json(), update=False)


@router.patch("/gamestate", response_model=Message, responses=ERRORS)
async def update_game(body: GameStateBody, commands: Bus, caller: SessionId, address: Address) -> Response:
    """Replace your game state if it exists; 404 tells the client to POST instead."""
    return await save(commands, GAMES, caller, address, body.gameData.as_json(), update=True)
