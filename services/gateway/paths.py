"""How a request's path and method reach the routes: as Express matched the seed's, and JSON when nothing does.

The seed's client writes to `/api/playerstate/` and reads `/api/playerstate/{id}`; Express treats
a trailing slash as optional and answers `HEAD` like `GET`. Both are done here, before any route
is matched, by rewriting the scope rather than redirecting: a 307 would double the cost of every
save, and many HTTP clients do not send a body again after one.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/api/"
ADMIN_PREFIX = "/admin"
# Routes outside /api/ that answer JSON; every other path is the game's static files.
OTHER_ROUTES = frozenset({"/session", "/livez", "/healthz", "/metrics"})
STATIC_METHODS = ("GET", "HEAD")
# Set in the scope of a HEAD answered as GET, for a response that never ends (an event stream) to end at once.
HEAD_AS_GET = "cachequest.head"
ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX) or path in OTHER_ROUTES or path == "/api" or is_admin(path)


def is_admin(path: str) -> bool:
    """The operators' console and its API (admin.py): JSON, never the game's files, served or not."""
    return path.startswith(ADMIN_PREFIX) and (len(path) == len(ADMIN_PREFIX) or path[len(ADMIN_PREFIX)] == "/")


def without_slash(path: str) -> str:
    """An API path as Express matches it: its trailing slash is optional."""
    return path[:-1] if path.endswith("/") and len(path) > 1 and is_api(path[:-1]) else path


class ExpressPaths:
    """An optional trailing slash, and `HEAD` as `GET` without the body, on every API route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["path"] = path = without_slash(scope["path"])
            if scope["method"] == "HEAD" and is_api(path):
                # A copy: uvicorn keeps its own scope's HEAD and so sends the headers without the body.
                scope = {**scope, "method": "GET", HEAD_AS_GET: True}
        await self.app(scope, receive, send)


class GameFiles(StaticFiles):
    """The game at `/`, behind every route: what no route matched ends here, and is answered in JSON.

    A path under /api/ that no route knows is a 404, and one that a route knows for other methods a
    405 with `Allow`; the files themselves answer only GET and HEAD.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if is_api(path):
            allowed = allowed_methods(scope)
            if allowed:
                raise HTTPException(405, f"{scope['method']} is not allowed here", {"Allow": ", ".join(allowed)})
            raise HTTPException(404, f"No route {path[:200]!r}: see /docs for the API")
        if scope["method"] not in STATIC_METHODS:
            raise HTTPException(405, f"{scope['method']} is not allowed here", {"Allow": ", ".join(STATIC_METHODS)})
        await super().__call__(scope, receive, send)


def allowed_methods(scope: Scope) -> list[str]:
    """The methods some route answers on this path: Starlette's partial matches, asked method by method
    (FastAPI's included routers match as a whole and do not list their methods)."""
    routes = [route for route in scope["app"].router.routes if not isinstance(route, Mount)]
    allowed = [
        method
        for method in ROUTE_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return sorted({*allowed, "HEAD"} if "GET" in allowed else allowed)
