"""`make run`: the whole stack in one terminal, and the same processes for the tests.

Starts the embedded Redis when REDIS_URL is unset (with `--cluster`, a local
three-master Redis Cluster), then the gateway and the workers as real
processes, each line of their output prefixed with its name.
Ctrl-C stops the services first (they drain), then Redis (it fsyncs).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO

import httpx
from dotenv import dotenv_values

from devtools import redis_cluster, redis_stack
from devtools.lifeline import ending_with_us

ROOT = redis_stack.ROOT


def log(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def pump(stream: IO[bytes], prefix: str, sink: IO[str]) -> None:
    for line in iter(stream.readline, b""):
        sink.write(f"{prefix} {line.decode(errors='replace')}")
        sink.flush()


class Stack:
    """The gateway and worker processes, started against one Redis.

    They run the code under `root` (`python -m` puts the working directory first on sys.path),
    so another checkout's services can run beside ours (`python -m bench --compare`).
    """

    def __init__(
        self,
        redis_url: str,
        port: int,
        env: dict[str, str] | None = None,
        sink: IO[str] | None = None,
        root: Path = ROOT,
    ) -> None:
        self.redis_url = redis_url
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {}), "REDIS_URL": redis_url, "PORT": str(port)}
        self.sink = sink or sys.stderr
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, service: str, name: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """Start `python -m services.<service>` in its own session, so a terminal's Ctrl-C reaches only us."""
        name = name or f"{service}-{sum(n.startswith(service) for n in self.processes) + 1}"
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=self.root, env={**self.env, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=ending_with_us(),
        )  # fmt: skip
        assert process.stdout is not None
        threading.Thread(target=pump, args=(process.stdout, f"[{name}]", self.sink), daemon=True).start()
        self.processes[name] = process
        return process

    def start(self, saves: int = 1, leaderboard: int = 1) -> None:
        for _ in range(saves):
            self.spawn("saves")
        for _ in range(leaderboard):
            self.spawn("leaderboard")
        self.spawn("gateway")

    def wait_healthy(self, timeout_s: float = 60, *, workers: bool = True) -> None:
        """Until /healthz says 200 (or, with `workers=False`, until the gateway answers at all)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode} during start-up")
            try:
                answer = httpx.get(f"{self.url}/healthz", timeout=2)
                if answer.status_code == 200 or not workers:
                    return
                last = "; ".join(answer.json().get("problems", [])) or answer.text
            except httpx.HTTPError as error:
                last = str(error)
            time.sleep(0.2)
        raise RuntimeError(f"the stack was not healthy within {timeout_s:.0f} s: {last}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for name in sorted(self.processes, key=lambda n: n.startswith("gateway"), reverse=True):
            self.stop(name)


@contextmanager
def embedded_redis(port: int, data_dir: Path) -> Iterator[str]:
    try:
        server = redis_stack.start(port, data_dir, log_file=data_dir / "redis.log")
    except redis_stack.ProvisionError as error:
        sys.exit(f"[stack] the embedded Redis could not start: {error}")
    log(f"embedded Redis (JSON + Search) on port {port}, data in {data_dir} (log: {data_dir / 'redis.log'})")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()  # SIGTERM: Redis fsyncs the append-only file and exits
        server.wait(30)
        log("Redis stopped")


@contextmanager
def embedded_cluster(first_port: int, replicas: int, data_dir: Path) -> Iterator[str]:
    try:
        cluster = redis_cluster.start(redis_cluster.consecutive_ports(first_port, replicas), data_dir, replicas)
    except redis_stack.ProvisionError as error:
        sys.exit(f"[stack] the embedded Redis Cluster could not start: {error}")
    try:
        yield cluster.url
    finally:
        cluster.stop()
        log("Redis Cluster stopped")


# `--cluster`'s STREAM_PARTITIONS unless one is set, as deploy/compose.cluster.yml has it: two a master, so
# that every master holds partitions and a batch's documents on its partition's master settle in one call.
CLUSTER_PARTITIONS = "6"


def configured(name: str, default: str) -> str:
    """The environment first, then .env, as the services themselves read it."""
    return os.environ.get(name) or str(dotenv_values(ROOT / ".env").get(name) or default)


def embedded(*, cluster: bool) -> AbstractContextManager[str]:
    if cluster:
        replicas = int(configured("EMBEDDED_CLUSTER_REPLICAS", "0"))
        first_port = int(configured("EMBEDDED_CLUSTER_PORT", "7000"))
        folder = ".data/redis-cluster" + (f"-{replicas}-replicas" if replicas else "")  # a cluster keeps its shape
        return embedded_cluster(first_port, replicas, ROOT / folder)
    return embedded_redis(
        int(configured("EMBEDDED_REDIS_PORT", "6379")), ROOT / configured("EMBEDDED_REDIS_DIR", ".data/redis")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stack",
        description="Run Redis (unless REDIS_URL is set), the gateway and the workers until Ctrl-C.",
        epilog="PORT, REDIS_URL, EMBEDDED_REDIS_PORT, EMBEDDED_CLUSTER_PORT, EMBEDDED_CLUSTER_REPLICAS and every "
        "service setting come from the environment or .env.",
    )
    parser.add_argument("--saves", type=int, default=1, help="saves worker processes (default 1)")
    parser.add_argument("--leaderboard", type=int, default=1, help="leaderboard worker processes (default 1)")
    parser.add_argument(
        "--cluster", action="store_true", help="start a local Redis Cluster of three masters rather than one Redis"
    )
    args = parser.parse_args()
    port = int(configured("PORT", "3000"))
    url = configured("REDIS_URL", "")
    if url:
        log("REDIS_URL is set: using it, starting no Redis")
    redis: AbstractContextManager[str] = nullcontext(url) if url else embedded(cluster=args.cluster)
    env = {}
    if args.cluster:
        partitions = configured("STREAM_PARTITIONS", CLUSTER_PARTITIONS)
        log(f"STREAM_PARTITIONS={partitions}: the command streams spread over the masters (docs/scaling.md)")
        env["STREAM_PARTITIONS"] = partitions
    with redis as redis_url:
        sys.exit(run(Stack(redis_url, port, env), args.saves, args.leaderboard))


def run(stack: Stack, saves: int, leaderboard: int) -> int:
    """Run until Ctrl-C (0) or until a service dies or never becomes healthy (1)."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stack.start(saves, leaderboard)
    failed = False
    try:
        stack.wait_healthy()
        log(f"Cache Quest is up: http://localhost:{stack.port}  (API docs: http://localhost:{stack.port}/docs)")
        log("press Ctrl-C to stop")
        while not stopping.wait(0.5):
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    log(f"{name} exited with code {process.returncode}; stopping everything")
                    failed = True
                    stopping.set()
    except RuntimeError as error:
        log(str(error))
        failed = True
    finally:
        log("stopping the services")
        stack.stop_all()
    return 1 if failed else 0


if __name__ == "__main__":
    main()
