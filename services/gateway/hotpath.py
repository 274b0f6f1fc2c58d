"""The hot routes, answered before FastAPI: saves, score submits, document reads and top-N.

On these routes FastAPI's routing, dependencies and validation took about half of the gateway's
CPU (docs/benchmarks.md). A request in the usual, valid shape, from a session that Redis confirmed
within SESSION_REFRESH_S, is answered here by the same functions the FastAPI routes call. Anything
else goes on, body and all, to the FastAPI app, which answers it as if this layer were not there: no
session or one due for re-confirmation, a body the quick checks below do not accept (so every
validation error keeps FastAPI's wording), every other route. HOT_PATH=false turns this layer off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.gateway import leaderboard, saves
from services.gateway.errors import response_for
from services.gateway.limits import bounded_body, replaying
from services.gateway.models import ID_PATTERN, MEMBER_MAX_LENGTH
from services.gateway.saves import GAMES, PLAYERS, Kind
from services.gateway.sessions import SessionCookies, client_address
from shared.settings import Settings

Route = Callable[[Scope, str, bytes], Awaitable[Response | None]]
"""(scope, caller's session id, body) to the answer, or None to leave the request to FastAPI."""

VALID_ID = re.compile(ID_PATTERN)
COUNT_ONLY = re.compile(rb"count=([1-9][0-9]{0,8})")
NOT_HERE = frozenset({"", "search"})  # `/api/playerstate/search` is a route of its own


class HotPath:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.cookies = SessionCookies(settings)
        self.reads: dict[str, Route] = {
            "/api/playerstate": partial(self._read, PLAYERS),
            "/api/gamestate": partial(self._read, GAMES),
            "/api/leaderboard": self._top,
        }
        self.writes: dict[tuple[str, str], Route] = {
            ("POST", "/api/playerstate"): partial(self._save, PLAYERS, False),
            ("PATCH", "/api/playerstate"): partial(self._save, PLAYERS, True),
            ("POST", "/api/gamestate"): partial(self._save, GAMES, False),
            ("PATCH", "/api/gamestate"): partial(self._save, GAMES, True),
            ("POST", "/api/leaderboard"): self._score,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        now = int(time.time())
        claim = self.cookies.read(scope, now) if route else None
        if route is None or claim is None or not self.cookies.is_current(claim[1], now):
            await self.app(scope, receive, send)
            return
        session_id, _confirmed_at, token = claim
        max_bytes = self.settings.max_body_bytes
        body = b"" if scope["method"] == "GET" else await bounded_body(scope, receive, send, max_bytes)
        if body is None:  # answered 413, or the client left
            return
        try:
            response = await route(scope, session_id, body)
        except Exception as error:
            response = response_for(error)
        if response is None:
            await self.app(scope, replaying(body, receive), send)
            return
        response.raw_headers.append((b"set-cookie", self.cookies.set_cookie(token).encode("latin-1")))
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> Route | None:
        if scope["method"] == "GET":
            prefix, _, last = scope["path"].rpartition("/")
            return None if last in NOT_HERE else self.reads.get(prefix)
        return self.writes.get((scope["method"], scope["path"]))

    @property
    def _state(self) -> State:
        """What the app's lifespan opened: the Redis clients, the command bus, the rate limits."""
        return self.app.state

    async def _read(self, kind: Kind, scope: Scope, caller: str, _body: bytes) -> Response | None:
        document_id = scope["path"].rpartition("/")[2]
        return await saves.read(self._state.hot, kind, caller, document_id)

    async def _top(self, scope: Scope, _caller: str, _body: bytes) -> Response | None:
        query: bytes = scope["query_string"]
        count = COUNT_ONLY.fullmatch(query) if query else None
        if query and count is None:
            return None
        key = scope["path"].rpartition("/")[2]
        return await leaderboard.top(
            self._state.hot, self.settings, key, int(count[1]) if count else leaderboard.DEFAULT_COUNT
        )

    async def _save(self, kind: Kind, update: bool, scope: Scope, caller: str, body: bytes) -> Response | None:
        parsed = json_body(scope, body)
        document = parsed.get(kind.field) if isinstance(parsed, dict) else None
        if not isinstance(document, dict) or not is_id(document.get("id")):
            return None
        # `id` first, as the FastAPI route's model dumps it.
        data = {"id": document["id"], **document}
        return await saves.save(self._state.bus, kind, caller, client_address(scope), data, update=update)

    async def _score(self, scope: Scope, caller: str, body: bytes) -> Response | None:
        parsed = json_body(scope, body)
        if not isinstance(parsed, dict):
            return None
        key, score, member = parsed.get("key"), parsed.get("score"), parsed.get("member")
        if not (isinstance(key, str) and isinstance(member, str) and len(member) <= MEMBER_MAX_LENGTH):
            return None
        if not isinstance(score, int | float) or isinstance(score, bool):
            return None
        return await leaderboard.submit(self._state.bus, caller, client_address(scope), key, float(score), member)


def is_id(value: object) -> bool:
    return isinstance(value, str) and VALID_ID.fullmatch(value) is not None  # as pydantic: no trailing newline


def json_body(scope: Scope, body: bytes) -> Any:
    """The parsed body if it is plainly JSON; None leaves anything unusual to FastAPI."""
    for name, value in scope["headers"]:
        if name == b"content-type" and value.partition(b";")[0].strip().lower() != b"application/json":
            return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
