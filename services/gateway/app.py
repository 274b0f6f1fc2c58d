"""The gateway application: its parts, middleware and lifecycle."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway import (
    account,
    admin,
    game_config,
    health,
    identity,
    leaderboard,
    live,
    metrics,
    recovery,
    responses,
    saves,
)
from services.gateway.commands import CommandBus
from services.gateway.layers import BodyLimit, Enters, ExpressPaths, Gateway, Leaves, RequestIds, is_api
from services.gateway.routing import Route, Router, openapi_routes
from services.gateway.server import ON_SHUTDOWN
from services.gateway.sessions import Sessions
from services.gateway.store import Store
from shared.connection import redact
from shared.pipelined import PipelinedRedis
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
# The JavaScript client (clients/js/), as the game imports it: plain ES modules, no build step.
CLIENT = ROOT / "clients/js/src"
STATIC_METHODS = ("GET", "HEAD")
# Every public API route, in the order they are matched (a search before the document it could be taken for).
ROUTES: tuple[Route, ...] = (
    *identity.ROUTES,
    *health.ROUTES,
    *metrics.ROUTES,
    *game_config.ROUTES,
    *saves.ROUTES,
    *leaderboard.ROUTES,
    *account.ROUTES,
    *live.ROUTES,
)


def routes(settings: Settings) -> tuple[Route, ...]:
    """What this gateway serves: every public route, and the operators' when ADMIN_TOKENS names one
    (else each /admin path is a 404), in the OpenAPI document only with ADMIN_OPENAPI."""
    return (*ROUTES, *admin.routes(settings))


def layers(settings: Settings) -> list[Enters | Leaves]:
    """What every request passes before its route, outermost first: its path as Express matches it,
    its id, its body (413 past the limit), its session (the caller, or a 429 for new sessions)."""
    return [ExpressPaths(), RequestIds(), BodyLimit(settings.max_body_bytes), Sessions(settings)]


# The collector's thresholds (Python's are 700, 10, 10) for a process that may hold thousands of
# open event streams: young collections come far more rarely, so far fewer short-lived objects
# live long enough to be promoted, and full collections, which walk every stream's objects (a long
# pause with thousands of listeners), seldom come due (docs/benchmarks.md, "The live tail").
GC_THRESHOLDS = (10_000, 20, 10)


def create_app(settings: Settings) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        app.state.settings = settings
        app.state.store = store = Store(
            PipelinedRedis(
                settings.redis_url, max_blocking=settings.reply_wait_connections, idle_s=settings.reply_wait_idle_s
            )
        )
        app.state.bus = CommandBus(store, settings)
        app.state.recovery = recovery.Recovery(settings)
        await store.ensure_indexes()
        app.state.live = live_tops = live.LiveTops(store, settings)
        live_tops.start()  # after ensure_indexes: it has learnt whether Redis is a cluster
        log.info("gateway on http://%s:%d using Redis at %s", settings.host, settings.port, redact(settings.redis_url))
        # What start-up built (FastAPI, pydantic, the modules) lives as long as the process: out of the
        # collector's sight, full collections under load pause far less (docs/benchmarks.md).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        yield {ON_SHUTDOWN: live_tops.end_all}
        await live_tops.aclose()
        await store.aclose()

    # Swagger UI and ReDoc load their code from a CDN, unpinned, onto the game's own origin.
    docs = settings.environment == "development" if settings.api_docs is None else settings.api_docs
    app = FastAPI(
        title="Cache Quest backend",
        summary="Saves, sessions and leaderboards for the Cache Quest browser game.",
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
    )
    responses.install(app)
    router = Router(routes(settings))
    app.state.admin_tokens = admin.token_digests(settings)
    app.openapi = lambda: openapi(app, router)  # type: ignore[method-assign]
    app.mount("/vendor/cache-quest", StaticFiles(directory=CLIENT, check_dir=False), name="cache-quest")
    app.mount("/vendor/kaplay", StaticFiles(directory=WEB / "node_modules/kaplay/dist", check_dir=False), name="kaplay")
    app.mount("/", GameFiles(router=router, directory=WEB / "public", html=True, check_dir=False), name="game")
    app.state.http_metrics = http_metrics = metrics.http_metrics(settings)
    return Gateway(layers(settings), router, app, http_metrics)


def openapi(app: FastAPI, router: Router) -> dict[str, Any]:
    """The API's document, generated from the route records (FastAPI's documented way to replace it)."""
    if app.openapi_schema is None:
        app.openapi_schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=openapi_routes(router.routes)
        )
    return app.openapi_schema


class GameFiles(StaticFiles):
    """The game at `/`, behind every route: what no route matched ends here, and is answered in JSON.

    A path under /api/ or /admin that no route knows is a 404, and one that a route knows for other methods a
    405 with `Allow`; the files themselves answer only GET and HEAD.
    """

    def __init__(self, *, router: Router, directory: Path, **options: Any) -> None:
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


def from_environment() -> ASGIApp:
    """The factory uvicorn calls in each gateway process (GATEWAY_PROCESSES)."""
    return create_app(get_settings())
