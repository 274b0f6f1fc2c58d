"""Faults injected for real under load: killed workers, a crashed Redis, SIGTERM to every service.

The invariant in each: every write that got a 2xx is in Redis with its last
acknowledged value, and the services recover without being restarted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from redis.cluster import RedisCluster

from devtools import redis_stack
from devtools.stack import Stack
from shared import keys
from shared.protocol import SAVES, SCORES
from tests.conftest import ARTIFACTS, FAST, Player, StackFactory, eventually, free_port, started

# A client here writes far faster than a player (two or three writes a value, 200 values): the write
# limits are not what these tests are about.
NO_SESSION_LIMIT = {"RATE_LIMIT_SESSION_WRITES": ""}

pytestmark = pytest.mark.slow

BOARD = "leaderboards:survivor-Grassland"


# Beside the level, what a merging client's save holds from its first write: a merge must keep it.
KEPT = {"name": "Hero", "bag": ["sword", "shield"], "pos": {"x": 1, "y": 2}}


@dataclass
class Client:
    """One player saving (or scoring) 1, 2, 3... in order, retrying a failed value as the game does.

    Kinds: `save` (PATCH, POST on a 404), `score`, `conditional` (each save with If-Match on the
    version the last one answered; on a 412 it reads the save, as the game does), `merge` (merge
    patches of the level into a save made once) and `delete` (odd values create the save, even ones
    delete it).
    """

    player: Player
    kind: str
    acked: int = 0
    failures: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds it took)
    etag: str | None = None

    def write(self, value: int) -> int:
        if self.kind in ("score", "rename"):
            name = f"N{value}" if self.kind == "rename" else "Hero"  # a rename: each score moves the entry
            body = {"key": BOARD, "score": value, "member": f"{name}-{self.player.id}"}
            return self.player.http.post("/api/leaderboard", json=body).status_code
        if self.kind == "conditional":
            return self.write_if_match(value)
        if self.kind == "merge" and value > 1:
            patch = {"playerData": {"id": self.player.id, "level": value}}
            headers = {"content-type": "application/merge-patch+json"}
            return self.player.http.patch("/api/playerstate", content=orjson.dumps(patch), headers=headers).status_code
        if self.kind == "delete" and value % 2 == 0:
            status = self.player.http.delete(f"/api/playerstate/{self.player.id}").status_code
            return 200 if status == 404 else status  # an earlier try, unanswered, deleted it
        document = {**KEPT, "level": value} if self.kind == "merge" else {"name": "Hero", "level": value}
        return self.player.save_with_fallback("playerstate", document).status_code

    def write_if_match(self, value: int) -> int:
        body = {"playerData": {"id": self.player.id, "name": "Hero", "level": value}}
        headers = {"If-Match": self.etag} if self.etag else {"If-None-Match": "*"}
        answer = self.player.http.post("/api/playerstate", json=body, headers=headers)
        if answer.status_code == 412:  # saved since: an earlier try, unanswered, landed? Read it.
            stored = self.player.http.get(f"/api/playerstate/{self.player.id}")
            self.etag = stored.headers.get("etag")
            return 200 if stored.status_code == 200 and stored.json()["level"] == value else 412
        if answer.status_code == 200:
            self.etag = answer.headers["etag"]
        return answer.status_code

    def run(self, writes: int, stop: threading.Event) -> None:
        value = 1
        while value <= writes and not stop.is_set():
            started_at = time.monotonic()
            try:
                status = self.write(value)
            except httpx.HTTPError:
                status = 0  # the connection itself failed (the gateway went away)
            if 200 <= status < 300:
                self.acked, value = value, value + 1
            else:
                self.failures.append((status, time.monotonic() - started_at))
                time.sleep(1 if status == 429 else 0.05)  # as the game waits out a limit (Retry-After: 1)

    def stored(self, db: redis.Redis | RedisCluster) -> int:
        if self.kind == "score":
            return int(db.zscore(BOARD, f"Hero-{self.player.id}") or 0)
        if self.kind == "rename":  # one entry, no ghost of an older name, its name the score's
            entries = list(db.zscan_iter(BOARD, match=f"*-{self.player.id}"))
            assert len(entries) == 1, entries
            member, score = entries[0]
            assert member == f"N{int(score)}-{self.player.id}".encode()
            return int(score)
        document: Any = db.json().get(keys.player(self.player.id))
        if self.kind == "merge":
            assert {name: document[name] for name in KEPT} == KEPT, "a merge kept every other field"
        return int(document["level"]) if isinstance(document, dict) else 0

    def possible(self) -> set[int]:
        """What Redis may hold: the last acknowledged value, or the one after it, sent but never
        acknowledged, that may have landed (after a delete, 0: nothing)."""
        if self.kind != "delete":
            return {self.acked, self.acked + 1}
        if self.acked % 2:
            return {self.acked, 0}  # created; the delete after it may have landed
        return {0, self.acked + 1}  # deleted (never brought back); the create after it may have landed


@dataclass
class Load:
    clients: list[Client]
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, stack: Stack, kind: str, clients: int, writes: int) -> Load:
        load = cls([Client(Player(stack.url), kind) for _ in range(clients)])
        for client in load.clients:
            thread = threading.Thread(target=client.run, args=(writes, load.stop), daemon=True)
            thread.start()
            load.threads.append(thread)
        return load

    def acked(self) -> int:
        return sum(client.acked for client in self.clients)

    def wait(self, timeout_s: float = 120) -> None:
        for thread in self.threads:
            thread.join(timeout_s)
        self.stop.set()

    def assert_nothing_lost(self, db: redis.Redis | RedisCluster) -> None:
        """The last acknowledged value, or the one after it, sent but never acknowledged, that may have landed."""
        assert self.acked() > 0
        for client in self.clients:
            assert client.stored(db) in client.possible()


def wait_for(load: Load, acked: int) -> None:
    eventually(lambda: load.acked() >= acked, 60, f"{acked} writes acknowledged")


def pending_total(db: redis.Redis) -> int:
    return sum(group["pending"] for stream in (SAVES.key(0), SCORES.key(0)) for group in db.xinfo_groups(stream))


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("saves", "save"),
        ("leaderboard", "score"),
        ("leaderboard", "rename"),
        ("saves", "conditional"),
        ("saves", "merge"),
        ("saves", "delete"),
    ],
)
def test_sigkill_one_of_two_workers_mid_load(make_stack: StackFactory, service: str, kind: str) -> None:
    stack = make_stack(**{service: 2}, **FAST, **NO_SESSION_LIMIT)
    db = redis.Redis.from_url(stack.redis_url, protocol=3)
    load = Load.start(stack, kind, clients=12, writes=200)
    wait_for(load, 300)
    stack.stop(f"{service}-1", signal.SIGKILL)
    load.wait()
    assert load.acked() == 12 * 200, "every client got through, retrying on the live worker"
    load.assert_nothing_lost(db)
    eventually(lambda: pending_total(db) == 0, 15, "the pending lists drain")


@pytest.mark.parametrize("name", ["gateway-1", "saves-1"])
def test_sigterm_under_load_loses_no_acknowledged_write(make_stack: StackFactory, name: str) -> None:
    stack = make_stack(saves=1, **FAST, **NO_SESSION_LIMIT)
    db = redis.Redis.from_url(stack.redis_url, protocol=3)
    load = Load.start(stack, "save", clients=8, writes=10_000)
    wait_for(load, 200)
    # uvicorn re-raises the SIGTERM it handled once it has drained, hence -15 for the gateway.
    assert stack.stop(name, signal.SIGTERM) in (0, -signal.SIGTERM), f"{name} drained and exited"
    time.sleep(0.5)
    load.stop.set()
    load.wait()
    load.assert_nothing_lost(db)


@pytest.fixture
def crashable_redis(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    if os.environ.get("REDIS_URL"):
        pytest.skip("needs the embedded Redis, to crash and restart it; unset REDIS_URL")
    port = free_port()
    yield f"redis://127.0.0.1:{port}/0", tmp_path / "redis", port


def test_redis_crash_under_load(crashable_redis: tuple[str, Path, int], request: pytest.FixtureRequest) -> None:
    url, data_dir, port = crashable_redis
    server = redis_stack.start(port, data_dir)  # append-only, fsync every second
    log_file = ARTIFACTS / "logs" / f"{request.node.name}.log"
    try:
        with started(url, log_file, saves=2, leaderboard=1) as stack:
            pids = {name: process.pid for name, process in stack.processes.items()}
            load = Load.start(stack, "save", clients=8, writes=10_000)
            wait_for(load, 200)
            server.kill()  # SIGKILL: no shutdown, no final fsync
            server.wait()
            time.sleep(1.5)  # requests in the gap must fail fast and clearly
            server = redis_stack.start(port, data_dir)
            recovered_at = load.acked()
            wait_for(load, recovered_at + 200)  # the same processes serve again, unrestarted
            load.stop.set()
            load.wait()
            assert {name: process.pid for name, process in stack.processes.items()} == pids
            assert all(process.poll() is None for process in stack.processes.values())
            gap = [(status, took) for client in load.clients for status, took in client.failures]
            assert gap, "the gap was seen by the clients"
            assert all(status in (503, 504) and took < 4 for status, took in gap), gap[:5]
            load.assert_nothing_lost(redis.Redis.from_url(url, protocol=3))
    finally:
        server.kill()
        server.wait()


def test_redis_back_empty(
    crashable_redis: tuple[str, Path, int], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Data lost for good (no append-only file): groups and indexes come back, sessions start afresh."""
    url, data_dir, port = crashable_redis
    server = redis_stack.start(port, data_dir)
    try:
        # SESSION_REFRESH_S=0: every request confirms its session, so the loss shows at once.
        with started(url, ARTIFACTS / "logs" / f"{request.node.name}.log", SESSION_REFRESH_S="0") as stack:
            before = Player(stack.url)
            assert before.save_with_fallback("playerstate", {"name": "Hero"}).status_code == 200
            server.kill()
            server.wait()
            server = redis_stack.start(port, tmp_path / "empty")
            assert before.http.get(f"/api/playerstate/{before.id}").status_code == 401  # its session is gone
            after = Player(stack.url)
            search = after.http.get("/api/playerstate/search", params={"name": "Hero"})
            assert search.status_code == 200 and search.json() == {"total": 0, "documents": []}
            eventually(
                lambda: after.save_with_fallback("playerstate", {"name": "Hero"}).status_code == 200, 15, "saves"
            )
            assert after.http.get("/api/playerstate/search", params={"name": "Hero"}).json()["total"] == 1
            eventually(lambda: httpx.get(f"{stack.url}/healthz").status_code == 200, 15, "healthy again")
    finally:
        server.kill()
        server.wait()


def test_all_workers_down_the_gateway_stays_responsive(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, **FAST)
    players = [Player(stack.url) for _ in range(20)]
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda p=p: answers.append(p.save("playerstate", {"n": 1}, "POST").status_code))
        for p in players
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # twenty saves are now waiting for a worker
    started_at = time.monotonic()
    health = httpx.get(f"{stack.url}/healthz")
    board = httpx.get(f"{stack.url}/api/leaderboard/{BOARD}")
    assert time.monotonic() - started_at < 1.0  # answered while twenty saves wait on a 1 s deadline
    assert health.status_code == 503 and "no live consumer in group 'saves'" in " ".join(health.json()["problems"])
    assert board.status_code == 404
    for thread in threads:
        thread.join()
    assert answers == [504] * 20
