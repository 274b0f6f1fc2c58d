"""What must exist before a run: sessions with a saved player each, and a board of 100,000 members."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import redis

from bench.measure.workload import BOARD, Session, create_request

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
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        made = asyncio.gather(*(new_session(client, gate) for _ in range(count)))
        return list(await asyncio.wait_for(made, SETUP_TIMEOUT_S))


def sessions(base_url: str, count: int) -> list[Session]:
    """`count` sessions of one server, each with its player saved (so PATCH answers 200, not 404)."""
    return asyncio.run(new_sessions(base_url, count))


def fill_board(redis_url: str, members: int) -> int:
    """Top the board up to `members` bot entries (member `Bot{n}-{32 hex}` like a real one); its size."""
    client = redis.Redis.from_url(redis_url)
    try:
        present = int(client.zcard(BOARD))
        for start in range(present, members, FILL_CHUNK):
            chunk = {
                f"Bot{n}-{secrets.token_hex(16)}": (n * 7919) % 1_000_000
                for n in range(start, min(members, start + FILL_CHUNK))
            }
            client.zadd(BOARD, chunk)
        return int(client.zcard(BOARD))
    finally:
        client.close()
