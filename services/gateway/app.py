"""The gateway application: its parts, middleware and lifecycle."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

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
from services.gateway.bodies import BodyLimitMiddleware
from services.gateway.commands import CommandBus
from services.gateway.hotpath import HotPath
from services.gateway.observe import Observe
from services.gateway.paths import ExpressPaths, GameFiles
from services.gateway.server import ON_SHUTDOWN
from services.gateway.sessions import SessionMiddleware
from services.gateway.store import Store
from shared.connection import redact
from shared.pipelined import PipelinedRedis
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parents[2] / "web"
# Every API route, in the order FastAPI matches them; the fast path is derived from the same list.
ROUTERS = (
    identity.router,
    health.router,
    metrics.router,
    game_config.router,
    saves.router,
    leaderboard.router,
    leaderboard.bodiless,
    account.router,
    live.router,
)

# The collector's thresholds (Python's are 700, 10, 10) for a process that may hold thousands of
# open event streams: young collections come 14 times more rarely, so far fewer short-lived objects
# live long enough to be promoted, and full collections, which walk every stream's objects (a pause
# of some 150 ms at 2,000 listeners), seldom come due (docs/benchmarks.md, "The live tail").
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
    app.add_middleware(SessionMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    for router in ROUTERS:
        app.include_router(router)
    if settings.admin_tokens:  # else no /admin route at all: each is a 404 (paths.py)
        app.state.admin_tokens = admin.token_digests(settings)
        app.include_router(admin.router, include_in_schema=settings.admin_openapi)
    app.mount("/vendor/kaplay", StaticFiles(directory=WEB / "node_modules/kaplay/dist", check_dir=False), name="kaplay")
    app.mount("/", GameFiles(directory=WEB / "public", html=True, check_dir=False), name="game")
    app.state.http_metrics = http_metrics = metrics.http_metrics(settings)
    served = ExpressPaths(Observe(app, http_metrics))
    if not settings.hot_path:
        return served
    return HotPath(app, served, [route for router in ROUTERS for route in router.routes], settings, http_metrics)


def from_environment() -> ASGIApp:
    """The factory uvicorn calls in each gateway process (GATEWAY_PROCESSES)."""
    return create_app(get_settings())
