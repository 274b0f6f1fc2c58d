"""Starting what is measured: the embedded Redis, our stack, and the two direct-write baselines.

Everything listens on 127.0.0.1 on free ports and is stopped by the ExitStack
that started it, so a failed run leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import httpx
import redis

from bench.measure import procs
from devtools import redis_cluster, redis_stack
from devtools.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
NODE_BASELINE = ROOT / "bench/baseline-node"
START_TIMEOUT_S = 60
# All load comes from 127.0.0.1 and each session writes several times a second: limits high enough
# never to refuse, so the limiter still counts every write (its cost is measured) but sheds nothing.
UNREFUSING_RATE_LIMITS = {
    "MAX_CONNECTIONS_PER_ADDRESS": "1000000",  # wrk's connections and the live phase's listeners
    "RATE_LIMIT_SESSION_WRITES": "1000000/minute",
    "RATE_LIMIT_ADDRESS_WRITES": "1000000/minute",
    "RATE_LIMIT_ADDRESS_SESSIONS": "1000000/minute",
}
# A browser takes the refreshed cookie from each response; wrk replays the cookie it was given, which
# after SESSION_REFRESH_S would make every request re-confirm its session. An hour approximates the
# browser: one confirmation per session per minute is a negligible share of its requests.
REPLAYED_COOKIE_REFRESH = {"SESSION_REFRESH_S": "3600"}


class StartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_redis(exits: ExitStack, data_dir: Path) -> tuple[str, int]:
    """The embedded Redis Stack on a free port, append-only as `make run` has it; its URL and pid."""
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    try:
        server = redis_stack.start(port, data_dir, log_file=data_dir.parent / "redis.log")
    except redis_stack.ProvisionError as error:
        raise StartError(f"the embedded Redis could not start: {error}") from error
    exits.callback(stop_process, server)
    return f"redis://127.0.0.1:{port}/0", server.pid


def start_one_master_cluster(exits: ExitStack, data_dir: Path) -> tuple[str, int]:
    """A Redis Cluster of one master holding every slot: the cluster's own code paths (routing,
    placement, cross-slot scripts) on one Redis process, as one Redis has; its URL and pid."""
    shutil.rmtree(data_dir, ignore_errors=True)
    [port] = redis_cluster.spare_ports(1)
    (data_dir / str(port)).mkdir(parents=True)  # laid out as redis_cluster's nodes are
    log_file = redis_cluster.log_of(port, data_dir)
    node = redis_stack.start(port, log_file.parent, log_file=log_file, extra_args=redis_cluster.CLUSTER_FLAGS)
    exits.callback(stop_process, node)
    with redis.Redis(host=redis_cluster.HOST, port=port) as client:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, redis_cluster.SLOTS - 1)
    redis_cluster.wait_until_ok([port], data_dir)
    return f"redis://{redis_cluster.HOST}:{port}/0", node.pid


def cluster_pids(cluster: redis_cluster.Cluster) -> dict[str, int]:
    """Each node's process, to watch, by its port."""
    return {f"redis-{port}": node.pid for port, node in zip(cluster.ports, cluster.processes, strict=True)}


def start_replica(exits: ExitStack, primary_url: str, data_dir: Path) -> int:
    """An embedded Redis replicating `primary_url`, in sync; its pid."""
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    primary = primary_url.rsplit(":", 1)[1].split("/")[0]
    try:
        server = redis_stack.start(
            port, data_dir, log_file=data_dir.parent / "replica.log", extra_args=("--replicaof", "127.0.0.1", primary)
        )
    except redis_stack.ProvisionError as error:
        raise StartError(f"the embedded replica could not start: {error}") from error
    exits.callback(stop_process, server)
    with redis.Redis(port=port) as client:
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise StartError(f"the replica on port {port} did not sync with {primary_url}")
            time.sleep(0.1)
    return server.pid


def start_ours(
    exits: ExitStack,
    redis_url: str,
    workers: int,
    log: IO[str],
    log_level: str,
    gateways: int = 1,
    root: Path = ROOT,
    *,
    write_limits: bool = False,
    settings: dict[str, str] | None = None,
) -> Stack:
    """The gateway (with `gateways` processes) and `workers` processes of each worker service, healthy.

    `root` is the checkout whose code they run: another revision gets the very same environment.
    `settings` are a phase's own, on top of the others.
    """
    env = {**service_env(log_level), **REPLAYED_COOKIE_REFRESH, "GATEWAY_PROCESSES": str(gateways), **(settings or {})}
    if write_limits:  # the defaults, as a real deployment has them
        env = {k: v for k, v in env.items() if k not in ("RATE_LIMIT_SESSION_WRITES", "RATE_LIMIT_ADDRESS_WRITES")}
    stack = Stack(redis_url, free_port(), env=env, sink=log, root=root)
    exits.callback(stack.stop_all)
    stack.start(saves=workers, leaderboard=workers)
    stack.wait_healthy(START_TIMEOUT_S)
    return stack


def add_gateway(stack: Stack, name: str, **env: str) -> str:
    """One more gateway process on the stack's Redis, with `env` besides the stack's; its URL once healthy."""
    port = free_port()
    stack.spawn("gateway", name=name, PORT=str(port), **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if stack.processes[name].poll() is not None:
            raise StartError(f"{name} exited with code {stack.processes[name].returncode} during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StartError(f"{name} was not healthy on port {port} within {START_TIMEOUT_S} s")


def service_env(log_level: str) -> dict[str, str]:
    return {"LOG_LEVEL": log_level, **UNREFUSING_RATE_LIMITS}


def stack_pids(stack: Stack) -> dict[str, int]:
    """Every process of the stack, with the children of a multi-process gateway under their own names."""
    return procs.with_children({name: process.pid for name, process in stack.processes.items()})


def start_fastapi_baseline(exits: ExitStack, redis_url: str, log: IO[str]) -> tuple[str, int]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.measure.baseline", "--port", str(port)]
    return start_http(exits, argv, {"REDIS_URL": redis_url}, port, log, ROOT)


def start_node_baseline(exits: ExitStack, redis_url: str, log: IO[str]) -> tuple[str, int]:
    node = shutil.which("node")
    if node is None:
        raise StartError("node is not installed")
    install_node_baseline()
    port = free_port()
    env = {"REDIS_URL": redis_url, "PORT": str(port), "NODE_ENV": "production"}
    return start_http(exits, [node, "server.js"], env, port, log, NODE_BASELINE)


def install_node_baseline() -> None:
    """`npm ci` from the committed lock file, once."""
    if (NODE_BASELINE / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise StartError("npm is not installed")
    print("==> installing the Node baseline's packages (bench/baseline-node)", flush=True)
    argv = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(argv, cwd=NODE_BASELINE, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise StartError(f"npm ci failed: {result.stderr.strip()[-500:]}")


def start_http(
    exits: ExitStack, argv: list[str], env: dict[str, str], port: int, log: IO[str], cwd: Path
) -> tuple[str, int]:
    """Start a server process and wait until it answers on `port`; its URL and pid."""
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    exits.callback(stop_process, process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"{' '.join(argv)} exited with {process.returncode}; see the log")
        try:
            httpx.get(f"{url}/ping", timeout=1)
            return url, process.pid
        except httpx.HTTPError:
            time.sleep(0.1)
    raise StartError(f"{' '.join(argv)} did not answer on port {port} within {START_TIMEOUT_S} s")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
