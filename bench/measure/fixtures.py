"""What must exist before a run: sessions with a saved player each, each with an entry on a board of
a million members (--board-size)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import random
import secrets

import httpx
import redis

from bench.measure.workload import BOARD, Session, create_request
from shared import keys

SETUP_TIMEOUT_S = 120
CONCURRENCY = 16
FILL_CHUNK = 10_000


async def new_session(client: httpx.AsyncClient, gate: asyncio.Semaphore) -> Session:
    """GET /session for a cookie, then POST the player document that saves and reads will use."""
    async with gate:
        answer = await client.get("/session")
        if answer.status_code == 429:
            raise RuntimeError(
                "the gateway rate-limits new sessions from 127.0.0.1: start the stack you attach to with "
                "RATE_LIMIT_ADDRESS_SESSIONS, RATE_LIMIT_ADDRESS_WRITES and RATE_LIMIT_SESSION_WRITES set high"
            )
        answer.raise_for_status()
        cookie = answer.headers.get_list("set-cookie")[0].split(";", 1)[0]
        session = Session(answer.json()["id"], cookie)
        create = create_request(session)
        headers = {"Cookie": cookie, "Content-Type": "application/json"}
        saved = await client.post(create.path, content=create.body, headers=headers)
        if saved.status_code != 200:
            raise RuntimeError(
                f"creating the player of session {session.id} answered {saved.status_code}: {saved.text}"
            )
        return session


async def new_sessions(base_url: str, count: int) -> list[Session]:
    gate = asyncio.Semaphore(CONCURRENCY)
    # A client that keeps no cookie: kept, the first answers' cookies went with every later GET /session,
    # which answered the session they named, so 512 "sessions" were a handful of players.
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(base_url=base_url, timeout=10, cookies=no_cookies) as client:
        made = asyncio.gather(*(new_session(client, gate) for _ in range(count)))
        return list(await asyncio.wait_for(made, SETUP_TIMEOUT_S))


def sessions(base_url: str, count: int, redis_url: str | None = None) -> list[Session]:
    """`count` sessions of one server, each with its player saved (so PATCH answers 200, not 404) and,
    given the server's Redis, an entry on the board."""
    made = asyncio.run(new_sessions(base_url, count))
    if redis_url is not None:
        place_on_board(redis_url, made)
    return made


def client(redis_url: str) -> redis.Redis | redis.RedisCluster:
    """A client of the server at `redis_url`, a cluster's if it is one: the board lives on its slot's master."""
    with redis.Redis.from_url(redis_url) as probe:
        clustered = bool(probe.info("cluster").get("cluster_enabled"))
    return redis.RedisCluster.from_url(redis_url) if clustered else redis.Redis.from_url(redis_url)


def fill_board(redis_url: str, members: int) -> int:
    """Top the board up to `members` bot entries (member `Bot{n}-{32 hex}` like a real one, in the
    board's member index too, as the leaderboard worker would have put it); its size. Pipelined,
    a chunk at a time: a million members take seconds."""
    db = client(redis_url)
    try:
        present = int(db.zcard(BOARD))
        pipeline = db.pipeline(transaction=False)
        for start in range(present, members, FILL_CHUNK):
            ids = {n: secrets.token_hex(16) for n in range(start, min(members, start + FILL_CHUNK))}
            pipeline.zadd(BOARD, {f"Bot{n}-{bot}": (n * 7919) % 1_000_000 for n, bot in ids.items()})
            pipeline.hset(keys.board_members(BOARD), mapping={bot: f"Bot{n}-{bot}" for n, bot in ids.items()})
            pipeline.execute()
        return int(db.zcard(BOARD))
    finally:
        db.close()


def place_on_board(redis_url: str, sessions: list[Session], seed: int = 14) -> None:
    """An entry for each session, at a random place on the board, so `me?around=5` finds one anywhere."""
    rng = random.Random(seed)
    members = {session.id: f"Bench-{session.id}" for session in sessions}
    with client(redis_url) as db:
        pipeline = db.pipeline(transaction=False)
        pipeline.zadd(BOARD, {member: rng.randint(1, 1_000_000) for member in members.values()}, gt=True)
        pipeline.hset(keys.board_members(BOARD), mapping=members)
        pipeline.execute()
