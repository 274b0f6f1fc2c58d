"""The compose deployment as README tells an operator to run it, on a real Docker engine.

`make up` with scaled workers, the seed client's calls through the published port, a saves worker
SIGKILLed while players save, `stop` draining every service, `down -v`; then the Redis Cluster
variant. Root on Debian installs and starts the engine (devtools/docker_engine.py); anywhere else
without one the tests fail saying what to install. Where no registry answers, the base images are
stand-ins built from Debian packages, which the engine keeps for the next run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devtools import docker_engine
from shared import keys
from shared.protocol import SAVES
from tests.conftest import ARTIFACTS, ROOT, Player, free_port
from tests.test_compat import BROWSER_HEADERS, save, write

pytestmark = pytest.mark.slow

BOARD = "leaderboards:survivor-Grassland"
APP_SERVICES = ("gateway", "saves", "leaderboard")
PLAYERS = 16
# Each player's pace: all share one client address, whose write limit (RATE_LIMIT_ADDRESS_WRITES) must
# never be what fails a save.
SAVE_EVERY_S = 0.6


PROJECT_PREFIX = "cqtest"


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    """A Docker engine that answers, and the base images for PYTHON_IMAGE, NODE_IMAGE and REDIS_IMAGE.

    An engine started here is stopped after these tests (the images stay on disk for the next run):
    a running engine that cannot pull would fail the Redis of test suites without this one's fallback.
    """
    daemon: subprocess.Popen[bytes] | None = None
    try:
        try:
            daemon = docker_engine.ensure_engine(ARTIFACTS / "logs/dockerd.log")
            sweep_leftovers()
            chosen = docker_engine.base_images()
        except docker_engine.EngineError as error:
            pytest.fail(str(error))
        yield chosen
    finally:
        if daemon is not None:
            docker_engine.stop_engine(daemon)


def sweep_leftovers() -> None:
    """Remove what a run killed mid-test left behind: its networks would hold the compose files' fixed subnets."""
    removals = (
        (["ps", "-a", "--format"], "{{.ID}}", ["rm", "-f"]),
        (["network", "ls", "--format"], "{{.Name}}", ["network", "rm"]),
        (["volume", "ls", "--format"], "{{.Name}}", ["volume", "rm"]),
    )
    for listing, name, remove in removals:
        rows = docker(*listing, f'{name} {{{{.Label "com.docker.compose.project"}}}}').split("\n")
        left = [row.split()[0] for row in rows if row.partition(" ")[2].startswith(PROJECT_PREFIX)]
        if left:
            docker(*remove, *left)


@dataclass
class Deployment:
    """One compose project of deploy/, driven through the Makefile and compose as README says."""

    file: str
    project_variable: str  # the Makefile's variable for the project's name
    project: str
    env: dict[str, str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make(self, target: str, *variables: str) -> None:
        argv = ["make", "--no-print-directory", target, f"{self.project_variable}={self.project}", *variables]
        finished = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=1800)
        assert finished.returncode == 0, f"make {target}: {finished.stderr[-3000:]}"

    def compose(self, *args: str, timeout: float = 180) -> str:
        argv = [*docker_engine.compose_command(), "-p", self.project, "-f", self.file, *args]
        finished = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert finished.returncode == 0, f"{' '.join(args)}: {finished.stderr[-3000:]}"
        return finished.stdout

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """`docker inspect` of the project's containers (of one service), stopped ones included."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = docker("ps", "-aq", *filters).split()
        found: list[dict[str, Any]] = json.loads(docker("inspect", *ids)) if ids else []
        return found

    def redis_cli(self, *args: str, service: str = "redis") -> str:
        return self.compose("exec", "-T", service, "redis-cli", *args, timeout=30)

    def wait_healthy(self, consumers: dict[str, int], timeout_s: float = 300) -> None:
        """Until every container with a health check is healthy and /healthz counts the workers."""
        deadline = time.monotonic() + timeout_s
        last = "nothing yet"
        while time.monotonic() < deadline:
            states = {box["Name"]: box["State"] for box in self.containers()}
            unhealthy = [name for name, state in states.items() if state.get("Health", {}).get("Status") == "unhealthy"]
            assert not unhealthy, f"unhealthy: {unhealthy}"
            waiting = [name for name, state in states.items() if state.get("Health", {}).get("Status") == "starting"]
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=3).json()
                checks = {f"{group}_consumers": count for group, count in consumers.items()}
                if not waiting and all(health["checks"].get(key) == value for key, value in checks.items()):
                    return
                last = f"waiting for {waiting}, /healthz: {health}"
            except httpx.HTTPError as error:
                last = f"waiting for {waiting}, /healthz: {error!r}"
            time.sleep(1)
        pytest.fail(f"not healthy within {timeout_s:.0f} s: {last}")

    def keep_logs(self) -> None:
        (ARTIFACTS / "logs").mkdir(parents=True, exist_ok=True)
        logs = self.compose("logs", "--no-color", "--timestamps")
        (ARTIFACTS / f"logs/compose-{self.project}.log").write_text(logs)


def docker(*args: str) -> str:
    finished = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, f"docker {args[0]}: {finished.stderr}"
    return finished.stdout


def docker_inspect(container: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker("inspect", container))
    return found[0]


def environment(images: dict[str, str], port: int) -> dict[str, str]:
    """This process's environment (proxies included) with the images, a new secret and the port;
    without an enclosing make's variables, which would confuse the make the tests run."""
    outer_make = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {name: value for name, value in os.environ.items() if name not in outer_make}
    return {**env, **images, "SESSION_SECRET": secrets.token_hex(32), "PORT": str(port)}


def deployed(images: dict[str, str], file: str, variable: str, target: str, *variables: str) -> Iterator[Deployment]:
    """A project of its own on a free port, up through the Makefile; its logs kept, then `down -v`."""
    port = free_port()
    deployment = Deployment(file, variable, f"{PROJECT_PREFIX}{secrets.token_hex(3)}", environment(images, port), port)
    try:
        deployment.make(target, *variables)
        yield deployment
    finally:
        if deployment.containers():
            deployment.keep_logs()
        deployment.compose("down", "-v", "--remove-orphans")


@pytest.fixture(scope="class")
def stack(images: dict[str, str]) -> Iterator[Deployment]:
    """README's `make up SAVES=3 LEADERBOARD=2`."""
    yield from deployed(images, "deploy/compose.yml", "PROJECT", "up", "SAVES=3", "LEADERBOARD=2")


@pytest.fixture(scope="class")
def cluster(images: dict[str, str]) -> Iterator[Deployment]:
    """README's `make up-cluster SAVES=2`."""
    yield from deployed(images, "deploy/compose.cluster.yml", "CLUSTER_PROJECT", "up-cluster", "SAVES=2")


@dataclass
class Saver:
    """A player saving a counter, one save at a time: what was acknowledged, and what failed and how."""

    player: Player
    acknowledged: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    misread: list[str] = field(default_factory=list)

    def run(self, until: threading.Event) -> None:
        count = 0
        while not until.is_set():
            count += 1
            try:
                answer = self.player.save_with_fallback("playerstate", {"name": "Saver", "count": count})
            except httpx.HTTPError as error:
                self.failures.append((count, repr(error)))
                continue
            if answer.status_code != 200:
                self.failures.append((count, str(answer.status_code)))
                continue
            self.acknowledged = count
            # Acknowledged means stored: read it back at once, from Redis through the gateway.
            stored = self.player.http.get(f"/api/playerstate/{self.player.id}").json()
            if stored.get("count") != count:
                self.misread.append(f"saved {count}, read {stored}")
            until.wait(SAVE_EVERY_S)


def pending_of(stack: Deployment, hostname: str) -> int:
    """Saves delivered to the consumers of one container (consumer names start with its hostname) and not settled."""
    summary = stack.redis_cli("XPENDING", SAVES.key(0), SAVES.group).split()
    by_consumer = dict(zip(summary[3::2], summary[4::2], strict=True))
    return sum(int(count) for name, count in by_consumer.items() if name.startswith(f"{hostname}-"))


def hold_saves(stack: Deployment, victim: dict[str, Any], pid: int) -> int:
    """Freeze the worker until it holds saves it read and cannot settle: the saves in flight at the kill.

    A worker frozen while it was not waiting on Redis is handed nothing: thaw it and try again.
    """
    for _ in range(10):
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1)
        held = pending_of(stack, victim["Config"]["Hostname"])
        if held:
            return held
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.2)
    pytest.fail("the frozen saves worker was handed no save in 10 tries")


def restarted(box: dict[str, Any], pid: int) -> bool:
    state = box["State"]
    return bool(box["RestartCount"] >= 1 and state["Running"] and state["Pid"] not in (0, pid))


class TestScaledStack:
    """deploy/compose.yml with three saves and two leaderboard workers; the tests run in this order."""

    def test_it_comes_up_healthy_with_every_worker_in_its_group(self, stack: Deployment) -> None:
        stack.wait_healthy({"saves": 3, "leaderboard": 2})
        assert {service: len(stack.containers(service)) for service in APP_SERVICES} == {
            "gateway": 1, "saves": 3, "leaderboard": 2,
        }  # fmt: skip
        modules = stack.redis_cli("MODULE", "LIST")
        assert "ReJSON" in modules and "search" in modules  # still loaded with compose's command
        assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
        stack.make("ps")

    def test_the_seed_clients_flow_and_a_score_through_the_published_port(self, stack: Deployment) -> None:
        origin = stack.url
        with httpx.Client(base_url=origin, headers={**BROWSER_HEADERS, "Referer": f"{origin}/"}, timeout=30) as client:
            me = client.get("/session").json()["id"]
            assert client.get(f"/api/playerstate/{me}").status_code == 404
            player = {"id": me, "name": "Link", "health": {"dungeon": 100}}
            game = {"id": me, "map": "Grassland", "chapter": 1}
            assert save(client, "/api/playerstate/", {"playerData": player}).json()["message"] == "Player created"
            assert save(client, "/api/gamestate/", {"gameData": game}).json()["message"] == "Game created"
            player["health"] = {"dungeon": 80}
            assert save(client, "/api/playerstate/", {"playerData": player}).json()["message"] == "Player updated"
            assert client.get(f"/api/playerstate/{me}").json() == player
            assert client.get(f"/api/gamestate/{me}/").json() == game
            assert json.loads(stack.redis_cli("JSON.GET", keys.player(me))) == player

            score = {"key": BOARD, "score": 1200, "member": f"Link-{me}"}
            assert write(client, "POST", "/api/leaderboard/", score).status_code == 200
            top = client.get(f"/api/leaderboard/{BOARD}?count=10").json()
            assert {"value": f"Link-{me}", "score": 1200, "rank": 1} in top
            assert stack.redis_cli("ZSCORE", BOARD, f"Link-{me}").strip() == "1200"

    def test_a_killed_saves_worker_loses_no_acknowledged_save_and_is_restarted(self, stack: Deployment) -> None:
        savers = [Saver(Player(stack.url)) for _ in range(PLAYERS)]
        until = threading.Event()
        threads = [threading.Thread(target=saver.run, args=(until,)) for saver in savers]
        for thread in threads:
            thread.start()
        try:
            time.sleep(3)  # every player saving
            victim = stack.containers("saves")[0]
            pid = victim["State"]["Pid"]
            in_flight = hold_saves(stack, victim, pid)
            os.kill(pid, signal.SIGKILL)  # the process, as a crash: the restart policy applies
            deadline = time.monotonic() + 60
            while not restarted(docker_inspect(victim["Id"]), pid):
                assert time.monotonic() < deadline, "the killed saves container was not restarted within 60 s"
                time.sleep(0.5)
            time.sleep(6)  # past the deadline of every save in flight at the kill: saves on, on three workers again
        finally:
            until.set()
            for thread in threads:
                thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

        # Exactly the saves the dead worker held fail, as 504s; every acknowledged one was stored at once.
        failures = [failure for saver in savers for failure in saver.failures]
        assert len(failures) == in_flight and all(status == "504" for _, status in failures), (in_flight, failures)
        assert not [line for saver in savers for line in saver.misread]
        assert all(saver.acknowledged > max((count for count, _ in saver.failures), default=0) for saver in savers)

        # The dead consumer's saves are claimed by another worker and, past their deadline, dead-lettered
        # as abandoned, not applied: nothing stays pending.
        pending = "?"
        deadline = time.monotonic() + 90
        while pending != "0":
            assert time.monotonic() < deadline, f"{pending} saves still pending after 90 s"
            time.sleep(1)
            pending = stack.redis_cli("XPENDING", SAVES.key(0), SAVES.group).split()[0]
        assert stack.redis_cli("XLEN", keys.dead_letters(0)).strip() == str(in_flight)
        for saver in savers:  # nothing acknowledged lost, nothing failed applied late
            stored = saver.player.http.get(f"/api/playerstate/{saver.player.id}").json()
            assert stored["count"] == saver.acknowledged
            saver.player.http.close()
        stack.wait_healthy({"saves": 3, "leaderboard": 2})

    def test_stop_drains_every_service_and_down_removes_it_all(self, stack: Deployment) -> None:
        stack.compose("stop", timeout=120)
        for service in APP_SERVICES:
            for box in stack.containers(service):
                assert (box["State"]["Running"], box["State"]["ExitCode"]) == (False, 0), box["Name"]
        logs = {service: stack.compose("logs", "--no-color", service) for service in (*APP_SERVICES, "redis")}
        assert logs["gateway"].count("Application shutdown complete") == 1
        for service, replicas in (("saves", 3), ("leaderboard", 2)):
            assert logs[service].count("stopping: finishing the batches in hand") == replicas
            assert logs[service].count("stopped: applied") == replicas
        assert "ready to exit, bye bye" in logs["redis"].lower()
        stack.keep_logs()

        stack.compose("down", "-v")
        assert stack.containers() == []
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.project}")
        assert volumes.split() == []


class TestClusterStack:
    """deploy/compose.cluster.yml: three Redis masters, the init that joins them, the services."""

    def test_players_save_at_once_and_search_over_every_master(self, cluster: Deployment) -> None:
        cluster.wait_healthy({"saves": 2, "leaderboard": 1})
        for node in ("redis-1", "redis-2", "redis-3"):
            assert "cluster_state:ok" in cluster.redis_cli("CLUSTER", "INFO", service=node)
            modules = cluster.redis_cli("MODULE", "LIST", service=node)
            assert "ReJSON" in modules and "search" in modules
        (init,) = cluster.containers("cluster-init")
        assert (init["State"]["Status"], init["State"]["ExitCode"]) == ("exited", 0)

        name = f"Cluster{secrets.token_hex(3)}"
        players = [Player(cluster.url) for _ in range(8)]
        answers: list[int] = []

        def save_one(player: Player) -> None:
            answers.append(player.save_with_fallback("playerstate", {"name": name}).status_code)

        threads = [threading.Thread(target=save_one, args=(player,)) for player in players]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [200] * len(players)

        found = players[0].http.get("/api/playerstate/search", params={"name": name}).json()
        assert found["total"] == len(players)  # every master's index asked
        assert {hit["value"]["id"] for hit in found["documents"]} == {player.id for player in players}
        for player in players:
            assert player.http.get(f"/api/playerstate/{player.id}").json() == {"id": player.id, "name": name}
            player.http.close()
