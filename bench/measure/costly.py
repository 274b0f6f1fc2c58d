"""One player's saves while others send the costliest saves the limits allow: how long the victim waits.

The hardening review found that rate limits count requests, not their cost: three sessions sending
saves of thousands of fresh words timed out an unrelated player's save after 9.75 s. The bounds
since (a name rule, at most MAX_JSON_VALUES values, batches of at most BATCH_MAX_BYTES) cap what one
player can cost everyone else; this measures the victim's latency alone and under that attack,
with the write limits at their defaults (the attackers get 429s, as real ones would).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import orjson

ATTACKERS = 3
LANES = 16  # requests each attacker keeps in flight
VICTIM_EVERY_S = 0.05
JSON = {"Content-Type": "application/json"}
MAX_BODY_BYTES = 64 * 1024
MAX_VALUES = 1024


@dataclass(frozen=True)
class Latencies:
    saves: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failed: int

    @classmethod
    def of(cls, answers: list[tuple[int, float]]) -> Latencies:
        ms = sorted(seconds * 1000 for _, seconds in answers)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        failed = sum(1 for status, _ in answers if status != 200)
        return cls(len(ms), round(statistics.median(ms), 1), round(p99, 1), round(ms[-1], 1), failed)


def costliest_save(session_id: str) -> bytes:
    """The most values (MAX_JSON_VALUES), the longest name, and a body padded to MAX_BODY_BYTES."""
    document: dict[str, object] = {"id": session_id, "name": "N" * 32, "stats": list(range(MAX_VALUES - 8))}
    size = len(orjson.dumps({"playerData": document}))
    document["pad"] = "x" * (MAX_BODY_BYTES - size - 16)
    return orjson.dumps({"playerData": document})


def session(client: httpx.Client) -> str:
    answer = client.get("/session")
    answer.raise_for_status()
    session_id: str = answer.json()["id"]
    return session_id


def victim_saves(url: str, seconds: float) -> list[tuple[int, float]]:
    """One small save every VICTIM_EVERY_S, each timed."""
    with httpx.Client(base_url=url, timeout=30) as client:
        me = session(client)
        body = orjson.dumps({"playerData": {"id": me, "name": "Victim", "level": 1}})
        client.post("/api/playerstate", content=body, headers=JSON)
        answers: list[tuple[int, float]] = []
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.monotonic()
            answer = client.patch("/api/playerstate", content=body, headers=JSON)
            answers.append((answer.status_code, time.monotonic() - started))
            time.sleep(VICTIM_EVERY_S)
        return answers


def attack(url: str, stop: threading.Event, outcomes: Counter[int]) -> None:
    async def attacker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            answer = await client.get("/session")
            content = costliest_save(answer.json()["id"])

            async def lane() -> None:
                while not stop.is_set():
                    sent = await client.post("/api/playerstate", content=content, headers=JSON)
                    outcomes[sent.status_code] += 1

            await asyncio.gather(*(lane() for _ in range(LANES)))

    async def everyone() -> None:
        await asyncio.gather(*(attacker() for _ in range(ATTACKERS)))

    asyncio.run(everyone())


def measure(url: str, seconds: float) -> dict[str, object]:
    """The victim alone, then under attack; the attackers' answers by status."""
    alone = Latencies.of(victim_saves(url, seconds))
    stop, outcomes = threading.Event(), Counter[int]()
    attacking = threading.Thread(target=attack, args=(url, stop, outcomes))
    attacking.start()
    try:
        time.sleep(1)  # the attack under way
        attacked = Latencies.of(victim_saves(url, seconds))
    finally:
        stop.set()
        attacking.join()
    return {
        "seconds": seconds,
        "attackers": ATTACKERS,
        "lanes": LANES,
        "alone": vars(alone),
        "attacked": vars(attacked),
        "attackers_answers": dict(sorted(outcomes.items())),
    }
