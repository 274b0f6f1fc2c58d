"""Player and game saves: writes go to the saves worker through its stream, reads straight to Redis.

The two kinds differ only in their names, keys and indexes (`Kind`), so their routes are registered
from that one description. No `from __future__ import annotations` here: the routes' body models are
set per kind at run time, and FastAPI reads them from the endpoints' annotations.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from services.gateway.bodies import StrictJSONRoute
from services.gateway.commands import CommandBus
from services.gateway.dependencies import ERRORS, Address, Bus, Redis, SessionId
from services.gateway.hotpath import Call, FastHandler, fast, parse_body
from services.gateway.models import (
    ID_PATTERN,
    NAME_PATTERN,
    NAME_RULE,
    PLAYER_NAME,
    GameStateBody,
    Message,
    PlayerStateBody,
    SaveDocument,
    SearchResult,
    count_values,
)
from services.gateway.responses import json_response
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys
from shared.protocol import EventType

router = APIRouter(prefix="/api", tags=["saves"], route_class=StrictJSONRoute)

NOT_FOUND = {"status": 404, "message": "Not Found"}


@dataclass(frozen=True)
class Kind:
    noun: str
    resource: str  # the path segment: /api/{resource}
    field: str  # the body's one field, holding the document
    body: type[BaseModel]
    key: Callable[[str], str]
    index: str
    create: EventType
    update: EventType
    public_fields: tuple[str, ...]  # what a search shows of another player's save, and what the index holds

    def document(self, body: BaseModel) -> SaveDocument:
        document: SaveDocument = getattr(body, self.field)
        return document


PLAYERS = Kind(
    "Player", "playerstate", "playerData", PlayerStateBody, keys.player, keys.PLAYER_INDEX,
    EventType.PLAYER_CREATE, EventType.PLAYER_UPDATE, ("id", "name"),
)  # fmt: skip
GAMES = Kind(
    "Game", "gamestate", "gameData", GameStateBody, keys.game, keys.GAME_INDEX,
    EventType.GAME_CREATE, EventType.GAME_UPDATE, ("id",),
)  # fmt: skip


async def save(
    commands: CommandBus, kind: Kind, caller: str, address: str, data: dict[str, Any], *, update: bool
) -> Response:
    """`data` is a validated document: a JSON object with an `id` of the right shape, first.

    The hot path and the FastAPI routes both check the rest here, so they answer alike.
    """
    if data["id"] != caller:
        raise HTTPException(403, f"{kind.field}.id must be your own session id")
    if "name" in kind.public_fields and "name" in data and not is_player_name(data["name"]):
        raise HTTPException(400, f"{kind.field}.name must be {NAME_RULE}")
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


async def read(store: Store, kind: Kind, caller: str, document_id: str) -> Response:
    if document_id != caller:
        raise HTTPException(403, f"You may read only your own {kind.noun.lower()} state")
    raw = await store.document(kind.key(document_id))
    if raw is None:
        return json_response(404, NOT_FOUND)
    return Response(raw, media_type="application/json")


def escape(term: str) -> str:
    """Backslash every non-alphanumeric character, so a term can only ever match itself."""
    return "".join(ch if ch.isalnum() else f"\\{ch}" for ch in term)


async def search(store: Store, kind: Kind, caller: str, limit: int, **terms: str | None) -> dict[str, Any]:
    clauses = [f"@{field}:({escape(value)})" for field, value in terms.items() if value]
    if not clauses:
        raise HTTPException(400, f"Give at least one of: {', '.join(terms)}")
    total, hits = await store.search(kind.index, " ".join(clauses), limit)
    documents = []
    for key, raw in hits:
        value = orjson.loads(raw)
        if value.get("id") != caller:  # another player's save: only what the leaderboard shows
            value = {field: value[field] for field in kind.public_fields if field in value}
        documents.append({"id": key, "value": value})
    return {"total": total, "documents": documents}


IdTerm = Annotated[str | None, Query(pattern=ID_PATTERN)]
NameTerm = Annotated[str | None, Query(pattern=NAME_PATTERN)]


@router.get("/playerstate/search", response_model=SearchResult, responses=ERRORS)
async def search_players(
    store: Redis, caller: SessionId, request: Request, name: NameTerm = None, id: IdTerm = None
) -> Any:
    """Full-text search on `player-idx`; other players' saves show only their id and name."""
    return await search(store, PLAYERS, caller, request.app.state.settings.search_limit, id=id, name=name)


@router.get("/gamestate/search", response_model=SearchResult, responses=ERRORS)
async def search_games(store: Redis, caller: SessionId, request: Request, id: IdTerm = None) -> Any:
    """Search on `game-idx`, which indexes `id` only."""
    return await search(store, GAMES, caller, request.app.state.settings.search_limit, id=id)


def add_document_routes(kind: Kind) -> None:
    """Read, create (POST) and replace (PATCH) one kind of save, on FastAPI and on the fast path alike."""
    noun, path = kind.noun.lower(), f"/{kind.resource}"

    async def read_document(store: Redis, caller: SessionId, document_id: str) -> Response:
        return await read(store, kind, caller, document_id)

    async def read_fast(call: Call) -> Response:
        return await read(call.state.store, kind, call.caller, call.params["document_id"])

    async def create(body: Any, commands: Bus, caller: SessionId, address: Address) -> Response:
        return await save(commands, kind, caller, address, kind.document(body).as_json(), update=False)

    async def replace(body: Any, commands: Bus, caller: SessionId, address: Address) -> Response:
        return await save(commands, kind, caller, address, kind.document(body).as_json(), update=True)

    def save_fast(*, update: bool) -> FastHandler:
        async def handle(call: Call) -> Response | None:
            body = parse_body(kind.body, call)
            if body is None:
                return None
            data = kind.document(body).as_json()
            return await save(call.state.bus, kind, call.caller, client_address(call.scope), data, update=update)

        return handle

    create.__annotations__["body"] = replace.__annotations__["body"] = kind.body
    router.get(
        f"{path}/{{document_id}}", name=f"read_{noun}", responses=ERRORS,
        description=f"Your own {noun} save, as you stored it.",
    )(fast(read_fast)(read_document))  # fmt: skip
    router.post(
        path, name=f"create_{noun}", response_model=Message, responses=ERRORS,
        description=f"Create or replace your {noun} save.",
    )(fast(save_fast(update=False))(create))  # fmt: skip
    router.patch(
        path, name=f"update_{noun}", response_model=Message, responses=ERRORS,
        description=f"Replace your {noun} save if it exists; 404 tells the client to POST instead.",
    )(fast(save_fast(update=True))(replace))  # fmt: skip


for _kind in (PLAYERS, GAMES):
    add_document_routes(_kind)
