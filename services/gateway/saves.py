"""Player and game saves: writes go to the saves worker through its stream, reads straight to Redis.

The two kinds differ only in their names, keys and indexes (`Kind`), so their routes are made from
that one description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.gateway.commands import CommandBus
from services.gateway.layers import JSON, MERGE_PATCH, Call, declares_merge_patch
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
    surely_within,
)
from services.gateway.responses import JSONBytes, json_response
from services.gateway.routing import ERRORS, Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from services.gateway.versions import etag, not_modified, read_precondition, write_precondition
from shared import keys
from shared.protocol import EventType, Reply
from shared.settings import Settings

TAGS = ("saves",)

NOT_FOUND = {"status": 404, "message": "Not Found"}
# Beside every route's errors: a write's failed precondition, a read's "not modified".
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 412: {"model": Message}}
READ_ANSWERS: dict[int | str, dict[str, Any]] = {**ERRORS, 304: {"description": "Not modified (If-None-Match)"}}


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
    merge: EventType
    delete: EventType
    public_fields: tuple[str, ...]  # what a search shows of another player's save, and what the index holds

    def document(self, body: BaseModel) -> SaveDocument:
        document: SaveDocument = getattr(body, self.field)
        return document


PLAYERS = Kind(
    "Player", "playerstate", "playerData", PlayerStateBody, keys.player, keys.PLAYER_INDEX,
    EventType.PLAYER_CREATE, EventType.PLAYER_UPDATE, EventType.PLAYER_MERGE, EventType.PLAYER_DELETE,
    ("id", "name"),
)  # fmt: skip
GAMES = Kind(
    "Game", "gamestate", "gameData", GameStateBody, keys.game, keys.GAME_INDEX,
    EventType.GAME_CREATE, EventType.GAME_UPDATE, EventType.GAME_MERGE, EventType.GAME_DELETE, ("id",),
)  # fmt: skip


async def save(call: Call, kind: Kind, event: EventType) -> Response:
    """The route's body holds a validated document: a JSON object with an `id` of the right shape,
    first; for a merge patch (RFC 7396), the fields to change, `null` removing one. A merge patch is
    checked as a document; what the merged document comes to, the worker checks as it merges.
    """
    caller, data = call.session, kind.document(call.body).as_json()
    if data["id"] != caller:
        raise HTTPException(403, f"{kind.field}.id must be your own session id")
    name = data.get("name")
    removes_name = event is kind.merge and "name" in data and name is None
    if "name" in kind.public_fields and "name" in data and not removes_name and not is_player_name(name):
        raise HTTPException(400, f"{kind.field}.name must be {NAME_RULE}")
    expect = write_precondition(call.scope)
    commands: CommandBus = call.state.bus
    settings = commands.settings
    if not surely_within(call.raw, settings.max_json_depth, settings.max_json_values):
        check_size(kind, data, settings)
    return answer(await commands.call(event, caller, client_address(call.scope), data, expect))


def check_size(kind: Kind, data: dict[str, Any], settings: Settings) -> None:
    values = count_values(data, settings.max_json_depth)
    if values is None:
        raise HTTPException(400, f"{kind.field} nests deeper than {settings.max_json_depth} levels")
    if values > settings.max_json_values:
        raise HTTPException(413, f"{kind.field} holds more than {settings.max_json_values} JSON values")


async def delete(call: Call, kind: Kind) -> Response:
    caller = call.session
    if call.params["document_id"] != caller:
        raise HTTPException(403, f"You may delete only your own {kind.noun.lower()} state")
    commands: CommandBus = call.state.bus
    reply = await commands.call(kind.delete, caller, client_address(call.scope), None, write_precondition(call.scope))
    return json_response(reply.status, reply.body)  # no ETag: nothing is stored any more


def answer(reply: Reply) -> Response:
    """A worker's reply to a save; one that was written carries its new version as the ETag."""
    response = json_response(reply.status, reply.body)
    if reply.status == 200 and reply.version:
        response.raw_headers.append((b"etag", etag(reply.version).encode()))
    return response


def is_player_name(name: object) -> bool:
    return isinstance(name, str) and PLAYER_NAME.fullmatch(name) is not None  # fullmatch: no trailing newline


async def read(call: Call, kind: Kind) -> Response:
    document_id = call.params["document_id"]
    if document_id != call.session:
        raise HTTPException(403, f"You may read only your own {kind.noun.lower()} state")
    tags = read_precondition(call.scope)
    store: Store = call.state.store
    raw, version = await store.versioned_document(kind.key(document_id))
    if raw is None:
        return json_response(404, NOT_FOUND)
    tag = etag(version)
    if not_modified(tags, version):
        return Response(status_code=304, headers={"ETag": tag})
    return JSONBytes(raw, 200, [(b"etag", tag.encode())])


def escape(term: str) -> str:
    """Backslash every non-alphanumeric character, so a term can only ever match itself."""
    return "".join(ch if ch.isalnum() else f"\\{ch}" for ch in term)


def search_query(**terms: str | None) -> str:
    """The Redis Search query for the terms given (every one must match); 400 for none."""
    clauses = [f"@{field}:({escape(value)})" for field, value in terms.items() if value]
    if not clauses:
        raise HTTPException(400, f"Give at least one of: {', '.join(terms)}")
    return " ".join(clauses)


async def search(call: Call, kind: Kind) -> Response:
    store: Store = call.state.store
    query = search_query(**{field: getattr(call.query, field) for field in kind.public_fields})
    total, hits = await store.search(kind.index, query, call.state.settings.search_limit)
    documents = []
    for key, raw in hits:
        value = orjson.loads(raw)
        if value.get("id") != call.session:  # another player's save: only what the leaderboard shows
            value = {field: value[field] for field in kind.public_fields if field in value}
        documents.append({"id": key, "value": value})
    return json_response(200, {"total": total, "documents": documents})


class PlayerSearch(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str | None = Field(None, pattern=NAME_PATTERN)
    id: str | None = Field(None, pattern=ID_PATTERN)


class GameSearch(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str | None = Field(None, pattern=ID_PATTERN)


async def search_players(call: Call) -> Response:
    """Full-text search on `player-idx`; other players' saves show only their id and name."""
    return await search(call, PLAYERS)


async def search_games(call: Call) -> Response:
    """Search on `game-idx`, which indexes `id` only."""
    return await search(call, GAMES)


def document_routes(kind: Kind) -> list[Route]:
    """Read, create (POST), replace or merge into (PATCH) and delete one kind of save."""
    noun, path = kind.noun.lower(), f"/api/{kind.resource}"

    async def read_document(call: Call) -> Response:
        return await read(call, kind)

    async def create(call: Call) -> Response:
        return await save(call, kind, kind.create)

    async def replace(call: Call) -> Response:
        return await save(call, kind, kind.merge if declares_merge_patch(call.scope) else kind.update)

    async def remove(call: Call) -> Response:
        return await delete(call, kind)

    return [
        Route(
            "GET", f"{path}/{{document_id}}", read_document, f"read_{noun}", session=True, tags=TAGS,
            responses=READ_ANSWERS,
            description=f"Your own {noun} save, as you stored it, with its version as the ETag; "
            "If-None-Match with that ETag answers 304.",
        ),
        Route(
            "POST", path, create, f"create_{noun}", body=kind.body, session=True, tags=TAGS,
            response_model=Message, responses=WRITE_ERRORS,
            description=f"Create or replace your {noun} save; If-Match applies it only over that version, "
            "If-None-Match: * only if there is none (else 412).",
        ),
        Route(
            "PATCH", path, replace, f"update_{noun}", body=kind.body, media_types=(JSON, MERGE_PATCH),
            session=True, tags=TAGS, response_model=Message, responses=WRITE_ERRORS,
            description=f"Replace your {noun} save if it exists; 404 tells the client to POST instead. With "
            "Content-Type: application/merge-patch+json, merge the fields given into it (RFC 7396: null "
            "removes one). If-Match applies it only over that version (else 412).",
        ),
        Route(
            "DELETE", f"{path}/{{document_id}}", remove, f"delete_{noun}", session=True, tags=TAGS,
            response_model=Message, responses=WRITE_ERRORS,
            description=f"Delete your own {noun} save (404 if there is none); If-Match deletes only that version.",
        ),
    ]  # fmt: skip


ROUTES = [
    Route(
        "GET", "/api/playerstate/search", search_players, "search_players", query=PlayerSearch, session=True,
        tags=TAGS, response_model=SearchResult,
    ),
    Route(
        "GET", "/api/gamestate/search", search_games, "search_games", query=GameSearch, session=True,
        tags=TAGS, response_model=SearchResult,
    ),
    *document_routes(PLAYERS),
    *document_routes(GAMES),
]  # fmt: skip
