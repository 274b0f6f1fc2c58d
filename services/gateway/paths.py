"""How a request's path and method reach the routes: as Express matched the seed's, and JSON when nothing does.

The seed's client writes to `/api/playerstate/` and reads `/api/playerstate/{id}`; Express treats
a trailing slash as optional and answers `HEAD` like `GET`. Both are done here, before any route
is matched, by rewriting the scope rather than redirecting: a 307 would double the cost of every
save, and many HTTP clients do not send a body again after one.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from services.gateway.routing import Call, Router

API_PREFIX = "/api/"
# Routes outside /api/ that answer JSON; every other path is the game's static files.
OTHER_ROUTES = frozenset({"/session", "/livez", "/healthz", "/metrics"})
STATIC_METHODS = ("GET", "HEAD")
# Set in the scope of a HEAD answered as GET, for a response that never ends (an event stream) to end at once.
HEAD_AS_GET = "cachequest.head"


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX) or path in OTHER_ROUTES or path == "/api"


def without_slash(path: str) -> str:
    """An API path as Express matches it: its trailing slash is optional."""
    return path[:-1] if path.endswith("/") and len(path) > 1 and is_api(path[:-1]) else path


class ExpressPaths:
    """The layer that makes a trailing slash optional, and answers `HEAD` as `GET` without the body,
    on every API route."""

    async def enter(self, call: Call) -> None:
        scope = call.scope
        scope["path"] = path = without_slash(scope["path"])
        if scope["method"] == "HEAD" and is_api(path):
            # A copy: uvicorn keeps its own scope's HEAD and so sends the headers without the body.
            call.scope = {**scope, "method": "GET", HEAD_AS_GET: True}


class GameFiles(StaticFiles):
    """The game at `/`, behind every route: what no route matched ends here, and is answered in JSON.

    A path under /api/ that no route knows is a 404, and one that a route knows for other methods a
    405 with `Allow`; the files themselves answer only GET and HEAD.
    """

    def __init__(self, *, router: Router, directory: str | os.PathLike[str], **options: Any) -> None:
        super().__init__(directory=directory, **options)
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if is_api(path):
            allowed = self.router.allowed(path)
            if allowed:
                raise HTTPException(405, f"{scope['method']} is not allowed here", {"Allow": ", ".join(allowed)})
            raise HTTPException(404, f"No route {path[:200]!r}: see /docs for the API")
        if scope["method"] not in STATIC_METHODS:
            raise HTTPException(405, f"{scope['method']} is not allowed here", {"Allow": ", ".join(STATIC_METHODS)})
        await super().__call__(scope, receive, send)
