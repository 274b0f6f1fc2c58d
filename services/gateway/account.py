"""The player's own data (API.md, v3): `GET /api/account` exports everything held about the caller,
`DELETE /api/account` erases it.

`export_account` and `erase_account` take an id, not a request: an operator's console exports and
erases any player's with them. The erase is a command through the streams (EventType.ACCOUNT_ERASE,
services/leaderboard/handlers.py's erase_handler) that reaches every master holding something of the
id; with a master unreachable it is refused before anything is written (503), and a retry of a
half-done one finishes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.responses import Response

from services.gateway.commands import CommandBus
from services.gateway.layers import Call
from services.gateway.leaderboard import current_season
from services.gateway.models import Account, Message
from services.gateway.responses import json_response
from services.gateway.routing import Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys, seasons
from shared.protocol import EventType, Reply
from shared.settings import Settings

TAGS = ("account",)


async def export_account(store: Store, settings: Settings, player_id: str) -> dict[str, Any]:
    """Both saves, every entry on every board (current season, archived seasons, all-time) with its
    rank, and whether a recovery code is active. An entry's `key` is the sorted set it is in, its
    `season` that set's season label (null for all-time and for boards without seasons)."""
    player, game, code = await asyncio.gather(
        store.document(keys.player(player_id)), store.document(keys.game(player_id)), store.recovery_hash(player_id)
    )
    boards = [board for name in settings.leaderboard_maps for board in await held(store, settings, name)]
    found = await asyncio.gather(*(store.entry(key, keys.board_members(key), player_id) for key, _ in boards))
    entries = [
        {"key": key, "season": season, "value": entry[0], "score": entry[1], "rank": entry[2] + 1}
        for (key, season), entry in zip(boards, found, strict=True)
        if entry is not None
    ]
    return {
        "id": player_id,
        "saves": {"player": loaded(player), "game": loaded(game)},
        "leaderboards": entries,
        "recovery": {"active": code is not None},
    }


def loaded(document: bytes | None) -> Any:
    return None if document is None else orjson.loads(document)


async def held(store: Store, settings: Settings, map_name: str) -> list[tuple[str, str | None]]:
    """The sorted sets of one map that may hold a player's entry, each with its season's label: the
    board; with seasons, also each past season still kept and all-time. The current season is read
    from the board, its archive's twin, where the reads rank it."""
    board = keys.leaderboard(map_name)
    season = current_season(settings)
    if season is None:
        return [(board, None)]
    mode = settings.leaderboard_season
    oldest = seasons.seasons_before(mode, season, settings.leaderboard_seasons_kept)
    labels = await store.seasons(keys.board_seasons(board), oldest.start_ms)
    past = [(keys.season_board(board, label), label) for label in labels if label != season.label]
    current = [(board, season.label)] if season.label in labels else []
    return [*current, *past, (keys.all_time_board(board), None)]


async def erase_account(commands: CommandBus, player_id: str, address: str) -> Reply:
    """Erase everything held about `player_id`, whether or not its session is live; idempotent.

    Every master is probed first: the erase reaches them all, and refused now (503) it leaves nothing
    half-done. The recovery code's hash rides along, as its entry is found by the code, not the id.
    """
    await commands.store.probe_writes()
    code = await commands.store.recovery_hash(player_id)
    payload = {"recovery": code}
    return await commands.call(EventType.ACCOUNT_ERASE, player_id, address, payload, live=False, counted_as="erases")


async def my_account(call: Call) -> Response:
    """Everything this game holds about you: your saves, your entries on every board and season, and
    whether a recovery code of yours is active."""
    return json_response(200, await export_account(call.state.store, call.state.settings, call.session))


async def delete_account(call: Call) -> Response:
    """Erase everything held about you: saves, board entries of every season, the recovery code, the
    session. Your cookie is cleared; an old copy of it can write nothing any more. Repeating it is harmless."""
    reply = await erase_account(call.state.bus, call.session, client_address(call.scope))
    if reply.status == 200:
        call.cookie = call.state.recovery.cookies.cleared()  # sent in place of the session's
    return json_response(reply.status, reply.body)


ROUTES = [
    Route("GET", "/api/account", my_account, "my_account", session=True, tags=TAGS, response_model=Account),
    Route("DELETE", "/api/account", delete_account, "delete_account", session=True, tags=TAGS, response_model=Message),
]
