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
from starlette.types import Scope

from services.gateway.bodies import StrictJSONRoute, declares_merge_patch, takes_merge_patch
from services.gateway.commands import CommandBus
from services.gateway.dependencies import ERRORS, Address, AppStore, Bus, SessionId
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
    surely_within,
)
from services.gateway.responses import JSONBytes, json_response
from services.gateway.sessions import client_address
from services.gateway.store import Store
from services.gateway.versions import etag, not_modified, read_precondition, write_precondition
from shared import keys
from shared.protocol import EventType, Reply
from shared.settings import Settings

router = APIRouter(prefix="/api", tags=["saves"], route_class=StrictJSONRoute)

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


async def save(
    commands: CommandBus,
    kind: Kind,
    caller: str,
    address: str,
    data: dict[str, Any],
    event: EventType,
    scope: Scope,
    body: bytes | None = None,
) -> Response:
    """`data` is a validated document: a JSON object with an `id` of the right shape, first; for a
    merge patch (RFC 7396), the fields to change, `null` removing one. `body`, when given, is the
    JSON text it came from, which can spare counting its values.

    The hot path and the FastAPI routes both check the rest here, so they answer alike. A merge patch
    is checked as a document; what the merged document comes to, the worker checks as it merges.
    """
    if data["id"] != caller:
        raise HTTPException(403, f"{kind.field}.id must be your own session id")
    name = data.get("name")
    removes_name = event is kind.merge and "name" in data and name is None
    if "name" in kind.public_fields and "name" in data and not removes_name and not is_player_name(name):
        raise HTTPException(400, f"{kind.field}.name must be {NAME_RULE}")
    expect = write_precondition(scope)
    settings = commands.settings
    if body is None or not surely_within(body, settings.max_json_depth, settings.max_json_values):
        check_size(kind, data, settings)
    return answer(await commands.call(event, caller, address, data, expect))


def check_size(kind: Kind, data: dict[str, Any], settings: Settings) -> None:
    values = count_values(data, settings.max_json_depth)
    if values is None:
        raise HTTPException(400, f"{kind.field} nests deeper than {settings.max_json_depth} levels")
    if values > settings.max_json_values:
        raise HTTPException(413, f"{kind.field} holds more than {settings.max_json_values} JSON values")


async def delete(
    commands: CommandBus, kind: Kind, caller: str, address: str, document_id: str, scope: Scope
) -> Response:
    if document_id != caller:
        raise HTTPException(403, f"You may delete only your own {kind.noun.lower()} state")
    reply = await commands.call(kind.delete, caller, address, None, write_precondition(scope))
    return json_response(reply.status, reply.body)  # no ETag: nothing is stored any more


def answer(reply: Reply) -> Response:
    """A worker's reply to a save; one that was written carries its new version as the ETag."""
    response = json_response(reply.status, reply.body)
    if reply.status == 200 and reply.version:
        response.raw_headers.append((b"etag", etag(reply.version).encode()))
    return response


def is_player_name(name: object) -> bool:
    return isinstance(name, str) and PLAYER_NAME.fullmatch(name) is not None  # fullmatch: no trailing newline


async def read(store: Store, kind: Kind, caller: str, document_id: str, scope: Scope) -> Response:
    if document_id != caller:
        raise HTTPException(403, f"You may read only your own {kind.noun.lower()} state")
    tags = read_precondition(scope)
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


async def search(store: Store, kind: Kind, caller: str, limit: int, **terms: str | None) -> dict[str, Any]:
    total, hits = await store.search(kind.index, search_query(**terms), limit)
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
    store: AppStore, caller: SessionId, request: Request, name: NameTerm = None, id: IdTerm = None
) -> Any:
    """Full-text search on `player-idx`; other players' saves show only their id and name."""
    return await search(store, PLAYERS, caller, request.app.state.settings.search_limit, id=id, name=name)


@router.get("/gamestate/search", response_model=SearchResult, responses=ERRORS)
async def search_games(store: AppStore, caller: SessionId, request: Request, id: IdTerm = None) -> Any:
    """Search on `game-idx`, which indexes `id` only."""
    return await search(store, GAMES, caller, request.app.state.settings.search_limit, id=id)


def add_document_routes(kind: Kind) -> None:
    """Read, create (POST), replace or merge into (PATCH) and delete one kind of save, on FastAPI and
    on the fast path alike."""
    noun, path = kind.noun.lower(), f"/{kind.resource}"

    def patch_event(scope: Scope) -> EventType:
        return kind.merge if declares_merge_patch(scope) else kind.update

    async def read_document(store: AppStore, caller: SessionId, document_id: str, request: Request) -> Response:
        return await read(store, kind, caller, document_id, request.scope)

    async def read_fast(call: Call) -> Response:
        return await read(call.state.store, kind, call.caller, call.params["document_id"], call.scope)

    async def create(body: Any, commands: Bus, caller: SessionId, address: Address, request: Request) -> Response:
        data = kind.document(body).as_json()
        return await save(commands, kind, caller, address, data, kind.create, request.scope)

    async def replace(body: Any, commands: Bus, caller: SessionId, address: Address, request: Request) -> Response:
        data = kind.document(body).as_json()
        return await save(commands, kind, caller, address, data, patch_event(request.scope), request.scope)

    async def remove(
        commands: Bus, caller: SessionId, address: Address, document_id: str, request: Request
    ) -> Response:
        return await delete(commands, kind, caller, address, document_id, request.scope)

    def save_fast(*, update: bool) -> FastHandler:
        async def handle(call: Call) -> Response | None:
            event = patch_event(call.scope) if update else kind.create
            body = parse_body(kind.body, call, merge_patch=event is kind.merge)
            if body is None:
                return None
            data = kind.document(body).as_json()
            address = client_address(call.scope)
            return await save(call.state.bus, kind, call.caller, address, data, event, call.scope, call.body)

        return handle

    async def delete_fast(call: Call) -> Response:
        address = client_address(call.scope)
        return await delete(call.state.bus, kind, call.caller, address, call.params["document_id"], call.scope)

    create.__annotations__["body"] = replace.__annotations__["body"] = kind.body
    router.get(
        f"{path}/{{document_id}}", name=f"read_{noun}", responses=READ_ANSWERS,
        description=f"Your own {noun} save, as you stored it, with its version as the ETag; "
        "If-None-Match with that ETag answers 304.",
    )(fast(read_fast)(read_document))  # fmt: skip
    router.post(
        path, name=f"create_{noun}", response_model=Message, responses=WRITE_ERRORS,
        description=f"Create or replace your {noun} save; If-Match applies it only over that version, "
        "If-None-Match: * only if there is none (else 412).",
    )(fast(save_fast(update=False))(create))  # fmt: skip
    router.patch(
        path, name=f"update_{noun}", response_model=Message, responses=WRITE_ERRORS,
        description=f"Replace your {noun} save if it exists; 404 tells the client to POST instead. With "
        "Content-Type: application/merge-patch+json, merge the fields given into it (RFC 7396: null "
        "removes one). If-Match applies it only over that version (else 412).",
    )(fast(save_fast(update=True))(takes_merge_patch(replace)))  # fmt: skip
    router.delete(
        f"{path}/{{document_id}}", name=f"delete_{noun}", response_model=Message, responses=WRITE_ERRORS,
        description=f"Delete your own {noun} save (404 if there is none); If-Match deletes only that version.",
    )(fast(delete_fast)(remove))  # fmt: skip


for _kind in (PLAYERS, GAMES):
    add_document_routes(_kind)
