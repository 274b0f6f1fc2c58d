"""The gateway application: its parts, middleware and lifecycle."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from services.gateway import errors, health, leaderboard, saves
from services.gateway.commands import CommandBus
from services.gateway.hotpath import HotPath
from services.gateway.limits import BodyLimitMiddleware
from services.gateway.models import Session
from services.gateway.ratelimit import RateLimits
from services.gateway.sessions import SessionMiddleware, session_id
from shared.connection import connect, ensure_indexes, redact
from shared.pipelined import PipelinedRedis
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parents[2] / "web"


def create_app(settings: Settings) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.redis = connect(settings.redis_url)
        app.state.hot = PipelinedRedis(settings.redis_url)  # the hot path's commands
        app.state.limits = RateLimits(app.state.hot, settings)
        app.state.bus = CommandBus(app.state.hot, app.state.limits, settings)
        await ensure_indexes(app.state.redis)
        log.info("gateway on http://%s:%d using Redis at %s", settings.host, settings.port, redact(settings.redis_url))
        # What start-up built (FastAPI, pydantic, the modules) lives as long as the process: out of the
        # collector's sight, a full collection under load pauses for a few ms instead of some 40.
        gc.freeze()
        yield
        await app.state.redis.aclose()
        await app.state.hot.aclose()

    # Swagger UI and ReDoc load their code from a CDN, unpinned, onto the game's own origin.
    docs = settings.environment == "development" if settings.api_docs is None else settings.api_docs
    app = FastAPI(
        title="Cache Quest backend",
        summary="Saves, sessions and leaderboards for the Cache Quest browser game.",
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
    )
    errors.install(app)
    app.add_middleware(SessionMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.get("/session", response_model=Session, tags=["session"])
    async def session(request: Request) -> Session:
        """Your session id (created on first visit): it is your player id and your game id."""
        return Session(id=await session_id(request))

    app.include_router(health.router)
    app.include_router(saves.router)
    app.include_router(leaderboard.router)
    app.mount("/vendor/kaplay", StaticFiles(directory=WEB / "node_modules/kaplay/dist", check_dir=False), name="kaplay")
    app.mount("/", StaticFiles(directory=WEB / "public", html=True, check_dir=False), name="game")
    return HotPath(app, settings) if settings.hot_path else app


def from_environment() -> ASGIApp:
    """The factory uvicorn calls in each gateway process (GATEWAY_PROCESSES)."""
    return create_app(get_settings())
