"""The plain approach, for comparison only: FastAPI writing Redis directly, one command per request.

No streams, no workers, no session store read: the cookie holds the session id
(unsigned: this server exists only to be measured). Same framework, server,
Redis client and models style as the gateway, so the difference is the design.
`python -m bench.measure.baseline --port 3200` with REDIS_URL set.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
import uvicorn
from fastapi import Cookie, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from starlette.responses import Response

COOKIE = "sid"


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str


class PlayerBody(BaseModel):
    playerData: Document


class ScoreBody(BaseModel):
    key: str
    score: float
    member: str


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def owner(sid: str | None, claimed: str) -> str:
    if sid is None or sid != claimed:
        raise HTTPException(403, "not your document")
    return sid


def create_app(redis_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(redis_url, max_connections=256)
        yield
        await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    def redis(request: Request) -> Redis:
        client: Redis = request.app.state.redis
        return client

    @app.get("/ping")
    async def ping() -> Response:
        return Response(b"ok")

    @app.get("/session")
    async def session(request: Request) -> Response:
        sid = secrets.token_hex(16)
        await redis(request).set(f"sessions:{sid}", b"{}", ex=7 * 24 * 3600)
        response = json_response({"id": sid})
        response.set_cookie(COOKIE, sid, max_age=7 * 24 * 3600, httponly=True)
        return response

    @app.post("/api/playerstate")
    async def create_player(body: PlayerBody, request: Request, sid: str | None = Cookie(None)) -> Response:
        key = f"players:{owner(sid, body.playerData.id)}"
        await redis(request).execute_command("JSON.SET", key, "$", orjson.dumps(body.playerData.model_dump()))
        return json_response({"status": 200, "message": "Player created"})

    @app.patch("/api/playerstate")
    async def update_player(body: PlayerBody, request: Request, sid: str | None = Cookie(None)) -> Response:
        key = f"players:{owner(sid, body.playerData.id)}"
        document = orjson.dumps(body.playerData.model_dump())
        if not await redis(request).execute_command("JSON.SET", key, "$", document, "XX"):
            return json_response({"status": 404, "message": "Not Found"}, 404)
        return json_response({"status": 200, "message": "Player updated"})

    @app.get("/api/playerstate/{player_id}")
    async def read_player(player_id: str, request: Request, sid: str | None = Cookie(None)) -> Response:
        raw = await redis(request).execute_command("JSON.GET", f"players:{owner(sid, player_id)}")
        if raw is None:
            return json_response({"status": 404, "message": "Not Found"}, 404)
        return Response(raw, media_type="application/json")

    @app.post("/api/leaderboard")
    async def submit_score(body: ScoreBody, request: Request, sid: str | None = Cookie(None)) -> Response:
        owner(sid, body.member.partition("-")[2])
        await redis(request).zadd(body.key, {body.member: body.score}, gt=True, ch=True)
        return json_response({"status": 200, "message": "Score recorded"})

    @app.get("/api/leaderboard/{key}")
    async def top(key: str, request: Request, count: int = 10) -> Response:
        rows = await redis(request).zrange(key, 0, min(count, 100) - 1, desc=True, withscores=True)
        entries = cast(list[tuple[bytes, float]], rows)
        return json_response([{"value": member.decode(), "score": score} for member, score in entries])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.measure.baseline", description=__doc__)
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    app = create_app(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
