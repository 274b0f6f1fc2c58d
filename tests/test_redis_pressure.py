"""Redis under pressure, for real: busy with a script, out of memory, swamped with reply waits, gone.

A busy or full Redis is answered 503 JSON with Retry-After by every gateway process,
with no traceback; the workers wait it out (or refuse what they cannot store) and carry on, the same
processes; nothing acknowledged is lost. A burst of writes holds at most REPLY_WAIT_CONNECTIONS
connections, closed once idle. /healthz says what is wrong, never where Redis is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from devtools import redis_stack
from devtools.stack import Stack
from shared import keys
from shared.protocol import SAVES, SCORES, Event, EventType, Reply
from shared.worker import Entry
from tests.conftest import ARTIFACTS, Player, StackFactory, eventually, free_port, spawn_gateway, started
from tests.test_faults import BOARD, Load, wait_for
from tests.test_workers import reply_of

pytestmark = pytest.mark.slow

# Long enough that a worker paused by the test (SIGSTOP) never lets a deadline pass.
SLOW_DEADLINE = {"REQUEST_TIMEOUT_MS": "30000", "CLAIM_IDLE_MS": "60000", "STREAM_RETENTION_MS": "120000"}


def probe(url: str, player: Player) -> dict[str, httpx.Response]:
    """One request of each kind to one gateway, as `player` (a new session: as nobody)."""
    with httpx.Client(base_url=url, cookies=dict(player.http.cookies), timeout=30) as http:
        return {
            "new session": httpx.get(f"{url}/session", timeout=30),
            "read": http.get(f"/api/playerstate/{player.id}"),
            "search": http.get("/api/playerstate/search", params={"name": "Hero"}),
            "top": http.get(f"/api/leaderboard/{BOARD}"),
            "save": http.post("/api/playerstate", json={"playerData": {"id": player.id, "name": "Probe"}}),
            "score": http.post("/api/leaderboard", json={"key": BOARD, "score": 1, "member": f"Probe-{player.id}"}),
        }


def assert_retry_later(answers: dict[str, httpx.Response]) -> None:
    for what, answer in answers.items():
        assert answer.status_code == 503, (what, answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/json" and answer.headers["retry-after"], what
        assert answer.json().keys() == {"status", "message"} and answer.json()["status"] == 503, what


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=30)


def assert_unharmed(stack: Stack, pids: dict[str, int], log_file: Path) -> None:
    """The same processes, all alive and healthy again, and no traceback in their logs."""
    assert {name: process.pid for name, process in stack.processes.items()} == pids
    assert all(process.poll() is None for process in stack.processes.values())
    eventually(lambda: health(stack.url).status_code == 200, 15, "healthy again")
    log = log_file.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


@contextlib.contextmanager
def busy(url: str, *first: Event) -> Iterator[None]:
    """A Lua script spinning past busy-reply-threshold (set to 100 ms), until SCRIPT KILL.

    The `first` events go onto their streams in the same pipeline, just before the script: a worker
    blocked in XREADGROUP stays blocked while a script runs, so this is what wakes it into the BUSY.
    """
    admin = redis.Redis.from_url(url)
    threshold = str(admin.config_get("busy-reply-threshold")["busy-reply-threshold"])
    admin.config_set("busy-reply-threshold", 100)

    def spin() -> None:
        with redis.Redis.from_url(url) as spinner, spinner.pipeline(transaction=False) as pipe:
            for event in first:
                stream = SCORES.key(0) if event.type is EventType.SCORE_SUBMIT else SAVES.key(0)
                pipe.xadd(stream, event.encode())
            pipe.eval("while true do end", 0)
            with contextlib.suppress(redis.ResponseError):  # "Script killed by user"
                pipe.execute()

    spinning = threading.Thread(target=spin)
    spinning.start()

    def refused() -> bool:
        try:
            admin.ping()
            return False
        except redis.ResponseError as error:
            return str(error).startswith("BUSY")

    try:
        eventually(refused, 10, "Redis answers BUSY")
        yield
    finally:
        with contextlib.suppress(redis.ResponseError):  # NOTBUSY: it never started
            admin.script_kill()
        spinning.join(10)
        admin.config_set("busy-reply-threshold", threshold)


@contextlib.contextmanager
def full(url: str) -> Iterator[None]:
    """Redis at maxmemory with noeviction, the limit a little below what Redis uses: every write that
    could grow memory is refused from the first, steadily (a limit just above is reached a few writes
    later, then crossed back and forth as memory comes and goes)."""
    admin = redis.Redis.from_url(url)
    before = {name: str(value) for name, value in admin.config_get("maxmemory*").items()}
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 256 * 1024)
    try:
        yield
    finally:
        admin.config_set("maxmemory", before["maxmemory"])
        admin.config_set("maxmemory-policy", before["maxmemory-policy"])


@dataclass
class Pressure:
    """A stack under saves and scores, through two gateway processes, for a fault."""

    pids: dict[str, int]
    db: redis.Redis
    players: dict[str, Player]  # one per gateway, by its URL, each with a save
    loads: tuple[Load, Load]

    @classmethod
    def start(cls, stack: Stack) -> Pressure:
        second = spawn_gateway(stack)
        pids = {name: process.pid for name, process in stack.processes.items()}
        players = {url: Player(url) for url in (stack.url, second)}
        for player in players.values():
            assert player.save("playerstate", {"name": "Hero"}, "POST").status_code == 200
        loads = Load.start(stack, "save", clients=4, writes=100_000), Load.start(stack, "score", 4, 100_000)
        for load in loads:
            wait_for(load, 40)
        return cls(pids, redis.Redis.from_url(stack.redis_url, protocol=3), players, loads)

    def drain(self) -> None:
        """Each load goes on a little, then stops: only 503s failed, and no acknowledged write is lost."""
        for load in self.loads:
            wait_for(load, load.acked() + 40)
            load.stop.set()
            load.wait()
            assert {status for client in load.clients for status, _took in client.failures} <= {503}
            load.assert_nothing_lost(self.db)


def test_a_busy_redis_is_503_everywhere_and_the_workers_carry_on(
    make_stack: StackFactory, request: pytest.FixtureRequest
) -> None:
    stack = make_stack()
    pressure = Pressure.start(stack)
    pids, db, players = pressure.pids, pressure.db, pressure.players
    session = players[stack.url].id
    pending = [
        Event.new(EventType.PLAYER_UPDATE, session, {"id": session, "name": "Hero", "level": 99}, 30_000, 0),
        Event.new(EventType.SCORE_SUBMIT, session, {"key": BOARD, "score": 99, "member": f"Busy-{session}"}, 30_000, 0),
    ]
    with busy(stack.redis_url, *pending):
        for url, player in players.items():
            assert_retry_later(probe(url, player))
            answer = health(url)
            assert answer.status_code == 503 and answer.json()["checks"]["redis"] == "busy"
        time.sleep(1.5)  # the workers meet the BUSY, and wait
    # The entries the workers held when Redis refused them stayed pending and were read again.
    assert [reply_of(db, event) for event in pending] == [
        Reply.message(200, "Player updated"),
        Reply.message(200, "Score recorded"),
    ]
    pressure.drain()
    log_file = ARTIFACTS / "logs" / f"{request.node.name}.log"
    lines = log_file.read_text().splitlines()
    for worker in ("saves-1", "leaderboard-1"):
        assert any(line.startswith(f"[{worker}] ") and "Redis busy" in line for line in lines), f"{worker} waited"
    assert_unharmed(stack, pids, log_file)


def test_a_full_redis_refuses_writes_with_503_and_loses_nothing(
    make_stack: StackFactory, request: pytest.FixtureRequest
) -> None:
    stack = make_stack(**SLOW_DEADLINE)
    pressure = Pressure.start(stack)
    pids, db, players = pressure.pids, pressure.db, pressure.players
    # A save published before Redis fills up and settled after: the worker cannot store it.
    caught = Player(stack.url)
    os.kill(pids["saves-1"], signal.SIGSTOP)
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(caught.save("playerstate", {"name": "Late"}, "POST")))
    in_flight.start()

    def published() -> bool:
        entries: list[Entry] = db.xrevrange(SAVES.key(0), count=100)  # type: ignore[assignment]
        return any(fields[b"session"] == caught.id.encode() for _, fields in entries)

    eventually(published, 10, "the save is on its stream")
    with full(stack.redis_url):
        os.kill(pids["saves-1"], signal.SIGCONT)
        in_flight.join()
        assert answers, "the save in flight was answered"
        assert_retry_later({"the save in flight": answers[0]})
        assert db.exists(keys.player(caught.id)) == 0, "refused, so not applied"
        for url, player in players.items():
            answers_now = probe(url, player)
            assert_retry_later({what: answers_now[what] for what in ("new session", "save", "score")})
            assert [answers_now[what].status_code for what in ("read", "search", "top")] == [200, 200, 200]
            answer = health(url)
            assert answer.status_code == 503 and answer.json()["checks"]["redis"] == "out of memory"
        time.sleep(1)
    assert caught.save("playerstate", {"name": "Late"}, "POST").status_code == 200
    pressure.drain()
    assert_unharmed(stack, pids, ARTIFACTS / "logs" / f"{request.node.name}.log")


def test_a_burst_of_writes_holds_few_redis_connections_and_leaves_none(make_stack: StackFactory) -> None:
    """1,000 writes waiting at once (the workers paused): at most REPLY_WAIT_CONNECTIONS of the
    gateway's connections block on replies, every write is answered, and the idle ones close."""
    cap = 64
    stack = make_stack(REPLY_WAIT_CONNECTIONS=str(cap), REPLY_WAIT_IDLE_S="1", **SLOW_DEADLINE)
    db = redis.Redis.from_url(stack.redis_url)
    players = [Player(stack.url) for _ in range(100)]
    workers = [stack.processes[name].pid for name in ("saves-1", "leaderboard-1")]

    def connections() -> tuple[int, int]:
        """Redis's clients, and those of them blocked in XREAD: the reply waits."""
        clients = db.client_list()
        return len(clients), sum(1 for client in clients if client["cmd"] == "xread" and "b" in client["flags"])

    def all_published() -> bool:
        return db.xlen(SAVES.key(0)) + db.xlen(SCORES.key(0)) == 1000

    baseline, _ = connections()
    peak = [0, 0]

    async def burst() -> list[int]:
        clients = [
            httpx.AsyncClient(base_url=stack.url, cookies=dict(player.http.cookies), timeout=60) for player in players
        ]

        async def write(http: httpx.AsyncClient, player: Player, n: int) -> int:
            if n % 2:
                body = {"key": BOARD, "score": n, "member": f"Burst{n}-{player.id}"}
                return (await http.post("/api/leaderboard", json=body)).status_code
            return (await http.post("/api/playerstate", json={"playerData": {"id": player.id, "n": n}})).status_code

        writes = asyncio.gather(
            *(write(http, p, n) for http, p in zip(clients, players, strict=True) for n in range(10))
        )
        try:
            await asyncio.to_thread(eventually, all_published, 60, "all 1,000 writes published")
            for _ in range(10):  # every write is now waiting for its reply
                total, waiting = await asyncio.to_thread(connections)
                peak[:] = max(peak[0], total), max(peak[1], waiting)
                await asyncio.sleep(0.05)
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            return await writes
        finally:
            for http in clients:
                await http.aclose()

    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        statuses = asyncio.run(burst())
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert statuses == [200] * 1000, "every write got its answer"
    assert peak[1] == cap, f"the reply waits held {peak[1]} connections (cap {cap})"
    assert peak[0] <= baseline + cap + 8, f"{peak[0]} clients at the peak, {baseline} before"
    eventually(lambda: connections()[0] <= baseline + 4, 10, "the idle reply-wait connections close")
    assert connections()[1] <= 1, "none blocks but the live tops' reader (services/gateway/live.py)"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    if os.environ.get("REDIS_URL"):
        pytest.skip("needs the embedded Redis, to stop it; unset REDIS_URL")
    port = free_port()
    server = redis_stack.start(port, tmp_path / "redis", appendonly=False)
    try:
        yield f"redis://127.0.0.1:{port}/0", port, server
    finally:
        server.kill()
        server.wait()


def test_healthz_says_what_is_down_but_not_where(
    own_redis: tuple[str, int, subprocess.Popen[bytes]], request: pytest.FixtureRequest
) -> None:
    url, port, server = own_redis
    log_file = ARTIFACTS / "logs" / f"{request.node.name}.log"
    with started(url, log_file) as stack:
        server.kill()
        server.wait()
        answer = health(stack.url)
        assert answer.status_code == 503
        assert answer.json()["checks"] == {"redis": "unreachable"}
        assert answer.json()["problems"] == ["Redis does not answer"]
        assert str(port) not in answer.text and "127.0.0.1" not in answer.text
        assert httpx.get(f"{stack.url}/livez", timeout=5).status_code == 200  # not ready, but alive: no restart

        def logged() -> bool:
            lines = log_file.read_text().splitlines()
            return any("health check: Redis unreachable" in line and f":{port}" in line for line in lines)

        eventually(logged, 10, "the gateway logs the detail")
