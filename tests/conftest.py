"""Real parts only: a Redis with JSON and Search, and the services as real processes.

Where the Redis comes from, in order: REDIS_URL if set (a disposable server:
the tests flush it), else a `redis:8` container when a Docker engine answers and
can start one (tried once per session), else the embedded Redis Stack server
(devtools/redis_stack.py) on a free port.
The cluster tests' Redis Cluster: REDIS_CLUSTER_URL if set (flushed too), else
three embedded masters (devtools/redis_cluster.py).
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from devtools import redis_cluster, redis_stack
from devtools.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# The game's maps, and boards of the tests' own that nothing else writes to.
TEST_MAPS = "Grassland,Mountains,Badlands,Scores,Empty,Recovered,Seed"
# Every test client comes from 127.0.0.1: per-address limits are tested on their own.
UNLIMITED_ADDRESS = {
    "MAX_CONNECTIONS_PER_ADDRESS": "100000",
    "RATE_LIMIT_ADDRESS_SESSIONS": "100000/minute",
    "RATE_LIMIT_ADDRESS_WRITES": "100000/minute",
    "RATE_LIMIT_ADDRESS_RECOVERIES": "100000/minute",
}
# Short clocks, so that deadlines pass and claims happen within a test.
FAST = {"REQUEST_TIMEOUT_MS": "1000", "CLAIM_IDLE_MS": "2000", "BLOCK_MS": "200"}
# A generous deadline, so a busy CI machine is not mistaken for a lost reply (fault tests set their own).
PATIENT = {"REQUEST_TIMEOUT_MS": "10000", "CLAIM_IDLE_MS": "20000"}

# The session's configuration: its terminal, which output capture leaves alone, says which Redis the tests use.
CONFIG: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C, so the fixtures still stop the Redis
    and the services they started: those run in sessions of their own and would outlive pytest."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    global CONFIG
    CONFIG = config
    # Every service the tests start signs cookies with it (so a test can sign one), and none writes
    # a generated secret into the checkout's .data/.
    os.environ.setdefault("SESSION_SECRET", secrets.token_urlsafe(32))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@functools.cache
def redis_containers_start() -> bool:
    """Whether the tests' Redis can be a `redis:8` container: decided once per session, so an engine
    that answers but cannot pull (no registry) costs one failed try, and an engine started later in
    the session (the compose test's) changes nothing."""
    if not docker_answers():
        return False
    from testcontainers.redis import RedisContainer

    try:
        with RedisContainer("redis:8"):
            return True
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        say(f"A Docker engine answers but cannot start a redis:8 container ({reason}): using the embedded Redis")
        return False


def say(line: str) -> None:
    """One line on pytest's terminal, past its output capture."""
    if CONFIG is None:
        return
    terminal = CONFIG.pluginmanager.get_plugin("terminalreporter")
    capture = CONFIG.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)


@contextmanager
def fresh_redis(data_dir: Path) -> Iterator[str]:
    """An empty Redis with JSON and Search, for as long as the block runs."""
    url = os.environ.get("REDIS_URL")
    if url:
        redis.Redis.from_url(url).flushall()
        yield url
    elif redis_containers_start():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:8") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    else:
        port = free_port()
        server = redis_stack.start(port, data_dir, log_file=data_dir / "redis.log")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty Redis Cluster with JSON and Search on every master, started when a test first asks."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        with RedisCluster.from_url(url) as client:
            client.flushall()  # on every master
        yield url
    else:
        with redis_cluster.running(redis_cluster.spare_ports(), tmp_path_factory.mktemp("redis-cluster")) as embedded:
            yield embedded.url


@pytest.fixture(scope="session")
def stack(redis_url: str) -> Iterator[Stack]:
    """One gateway and one process of each worker, shared by the tests that only talk HTTP."""
    with started(redis_url, ARTIFACTS / "logs/stack.log") as running:
        yield running


@contextmanager
def started(redis_url: str, log_file: Path, saves: int = 1, leaderboard: int = 1, **env: str) -> Iterator[Stack]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as sink:
        env = {"LOG_LEVEL": "INFO", "LEADERBOARD_MAPS": TEST_MAPS, **UNLIMITED_ADDRESS, **PATIENT, **env}
        running = Stack(redis_url, free_port(), env=env, sink=sink)
        try:
            running.start(saves, leaderboard)
            running.wait_healthy(workers=bool(saves and leaderboard))
            yield running
        finally:
            running.stop_all()


@contextmanager
def own_stack(tmp_path_factory: pytest.TempPathFactory, name: str, **env: str) -> Iterator[Stack]:
    """A stack on a Redis of its own, for a module whose settings (boards, seasons, limits) the session's
    stack does not share: its workers would dead-letter what the shared stack's take."""
    with (
        fresh_redis(tmp_path_factory.mktemp(name)) as url,
        started(url, ARTIFACTS / f"logs/{name}.log", 1, 1, **env) as running,
    ):
        yield running


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StackFactory]:
    """Stacks of the test's own, each on a fresh Redis, for tests that kill and restart processes."""
    with ExitStack() as cleanup:

        def make(saves: int = 1, leaderboard: int = 1, **env: str) -> Stack:
            data_dir = tmp_path / f"redis-{free_port()}"
            url = cleanup.enter_context(fresh_redis(data_dir))
            log_file = ARTIFACTS / "logs" / f"{request.node.name}.log"
            return cleanup.enter_context(started(url, log_file, saves, leaderboard, **env))

        yield make


class Player:
    """An HTTP client with its own session, as a browser tab would be."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        answer = self.http.get("/session")
        answer.raise_for_status()
        self.id: str = answer.json()["id"]

    def save(self, kind: str, document: dict[str, Any], method: str = "PATCH") -> httpx.Response:
        field = "playerData" if kind == "playerstate" else "gameData"
        return self.http.request(method, f"/api/{kind}", json={field: {"id": self.id, **document}})

    def save_with_fallback(self, kind: str, document: dict[str, Any]) -> httpx.Response:
        """The seed client's flow: PATCH, and POST when the answer is 404."""
        answer = self.save(kind, document, "PATCH")
        return self.save(kind, document, "POST") if answer.status_code == 404 else answer


@pytest.fixture
def player(stack: Stack) -> Iterator[Player]:
    new = Player(stack.url)
    yield new
    new.http.close()


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def spawn_gateway(stack: Stack, name: str = "gateway-2") -> str:
    """A second gateway process on the stack's Redis, answering: its URL."""
    port = free_port()
    stack.spawn("gateway", name=name, PORT=str(port))
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(answers, 60, f"{name} answers")
    return url
