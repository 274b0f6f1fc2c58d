"""A local Redis Cluster: three masters of the embedded Redis Stack server, JSON and Search on each,
and, if asked, replicas of each (which the cluster promotes when their master fails).

For `make run-cluster` and the tests of cluster support. Each node is
devtools/redis_stack.py's server with cluster mode on, in a folder of its own
(its nodes.conf is its identity in the cluster, its append-only file its data);
`redis-cli --cluster create`, from the same wheel, joins them and spreads the
16384 slots. Started again on the same folders, the nodes rejoin the cluster
they formed instead.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devtools import redis_stack
from devtools.redis_stack import ProvisionError

HOST = "127.0.0.1"
MASTERS = 3
SLOTS = 16384
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000
HIGHEST_PORT = 65535 - BUS_OFFSET
# Throwaway clusters (the tests') take ports below Linux's ephemeral range (32768-60999), bus
# ports included, so that no outgoing connection grabs one between the check and the bind.
SPARE_PORTS = range(10000, 32768 - BUS_OFFSET)
CLUSTER_FLAGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
DEFAULT_PORT = 7000
DEFAULT_DIR = redis_stack.ROOT / ".data/redis-cluster"
READY_TIMEOUT_S = 30
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def say(message: str) -> None:
    print(f"[redis-cluster] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Cluster:
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        """Any node will do: a cluster client learns the others from it."""
        return f"redis://{HOST}:{self.ports[0]}/0"

    def stop(self) -> None:
        """SIGTERM to every node (each fsyncs its append-only file), then wait for them."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def nodes_for(replicas: int) -> int:
    return MASTERS * (1 + replicas)


def consecutive_ports(first: int, replicas: int = 0) -> list[int]:
    return [first + n for n in range(nodes_for(replicas))]


def is_free(port: int) -> bool:
    """Nothing listens on the port (SO_REUSEADDR, as Redis binds, so closed connections don't count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def spare_ports(count: int = MASTERS) -> list[int]:
    """Ports for a throwaway cluster, free now along with their bus ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.choice(SPARE_PORTS)
        if port not in ports and is_free(port) and is_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def check_ports(ports: list[int]) -> None:
    for port in ports:
        if not 1 <= port <= HIGHEST_PORT:
            raise ProvisionError(
                f"port {port} is out of range: use 1-{HIGHEST_PORT}, as the cluster bus takes port + {BUS_OFFSET}"
            )
        if not is_free(port):
            raise ProvisionError(f"port {port} is in use")
        if not is_free(port + BUS_OFFSET):
            raise ProvisionError(f"port {port + BUS_OFFSET} (the cluster bus of port {port}) is in use")


def cluster_info(port: int) -> dict[str, Any]:
    with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
        info: dict[str, Any] = client.cluster("info")
        return info


def already_joined(ports: list[int], data_dir: Path) -> bool:
    """True when the nodes came back from an earlier run as one cluster, False when they are new."""
    known = [int(cluster_info(port)["cluster_known_nodes"]) for port in ports]
    if all(count == len(ports) for count in known):
        return True
    if all(count == 1 for count in known):
        return False
    raise ProvisionError(
        f"the nodes in {data_dir} know {known} nodes each, not one cluster of {len(ports)}: "
        f"delete {data_dir} to start a new cluster"
    )


def create(ports: list[int], replicas: int = 0) -> None:
    """`redis-cli --cluster create`, answering its question with `yes`."""
    server = redis_stack.provision()
    command = [str(server.binary.with_name("redis-cli")), "--cluster", "create"]
    command += [f"{HOST}:{port}" for port in ports] + ["--cluster-replicas", str(replicas)]
    masters = len(ports) // (1 + replicas)
    say(
        f"joining them: redis-cli --cluster create ... --cluster-replicas {replicas} "
        f"({SLOTS} slots over {masters} masters, {replicas} replica(s) each)"
    )
    result = subprocess.run(command, input="yes\n", env=server.env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        output = ANSI_COLOUR.sub("", result.stdout + result.stderr).strip()
        raise ProvisionError(f"redis-cli --cluster create exited with {result.returncode}: ...{output[-800:]}")


def wait_until_ok(ports: list[int], data_dir: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every node says cluster_state:ok: the slots are served and the nodes agree."""
    say("waiting for cluster_state:ok on every node")
    deadline = time.monotonic() + timeout_s
    for port in ports:
        state = "unknown"
        while state != "ok":
            try:
                state = cluster_info(port)["cluster_state"]
            except redis.ConnectionError as error:
                message = f"node {HOST}:{port} stopped answering ({error}); see {log_of(port, data_dir)}"
                raise ProvisionError(message) from error
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"node {HOST}:{port} still says cluster_state:{state} after {timeout_s:.0f} s; "
                    f"see {log_of(port, data_dir)}"
                )
            time.sleep(0.1)
    wait_for_replicas(ports, data_dir, deadline)


def wait_for_replicas(ports: list[int], data_dir: Path, deadline: float) -> None:
    """Until every replica's link to its master is up (its first sync done): until then, a failover
    would promote a replica that has nothing."""
    for port in ports:
        while True:
            with redis.Redis(host=HOST, port=port, socket_timeout=5) as client:
                replication = client.info("replication")
            if replication["role"] != "slave" or replication.get("master_link_status") == "up":
                break
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"replica {HOST}:{port} is not in sync with its master; see {log_of(port, data_dir)}"
                )
            time.sleep(0.1)


def log_of(port: int, data_dir: Path) -> Path:
    return data_dir / str(port) / "redis.log"


def start(ports: list[int], data_dir: Path, replicas: int = 0, node_timeout_ms: int | None = None) -> Cluster:
    """Start a node on each port (data in data_dir/<port>/), join them unless they already are one (with
    `replicas` replicas a master: len(ports) is nodes_for(replicas)), and wait for cluster_state:ok and
    every replica in sync; whatever fails, the nodes started so far are stopped. `node_timeout_ms`: how
    long a master may not answer before the others fail it over (Redis's default: 15 s)."""
    check_ports(ports)
    if len(ports) != nodes_for(replicas):
        raise ProvisionError(f"{replicas} replica(s) for each of {MASTERS} masters need {nodes_for(replicas)} ports")
    began = time.monotonic()
    cluster = Cluster(ports, [])
    flags = [*CLUSTER_FLAGS, *(("--cluster-node-timeout", str(node_timeout_ms)) if node_timeout_ms else ())]
    try:
        for port in ports:
            node = redis_stack.start(port, data_dir / str(port), log_file=log_of(port, data_dir), extra_args=flags)
            cluster.processes.append(node)
        say(f"{len(ports)} nodes on ports {', '.join(map(str, ports))}, data and logs in {data_dir}")
        if already_joined(ports, data_dir):
            say("they formed a cluster on an earlier run: rejoining it")
        else:
            create(ports, replicas)
        wait_until_ok(ports, data_dir)
    except BaseException:
        cluster.stop()
        raise
    say(f"the cluster is up in {time.monotonic() - began:.1f} s")
    return cluster


@contextmanager
def running(
    ports: list[int], data_dir: Path, replicas: int = 0, node_timeout_ms: int | None = None
) -> Iterator[Cluster]:
    cluster = start(ports, data_dir, replicas, node_timeout_ms)
    try:
        yield cluster
    finally:
        cluster.stop()


def serve(cluster: Cluster) -> int:
    """Until Ctrl-C or SIGTERM (0), or until a node dies (1); then stop every node."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"REDIS_URL={cluster.url}", flush=True)
    say("press Ctrl-C to stop")
    failed = False
    try:
        while not stopping.wait(0.5):
            exited = [
                port for port, node in zip(cluster.ports, cluster.processes, strict=True) if node.poll() is not None
            ]
            if exited:
                say(f"the node on port {exited[0]} exited; stopping the others")
                failed = True
                break
    finally:
        cluster.stop()
        say("stopped")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.redis_cluster",
        description="A local Redis Cluster: three masters with JSON and Search, from the embedded Redis Stack, "
        "and optionally replicas of each.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start_command = commands.add_parser(
        "start",
        help="start it and keep it in the foreground until Ctrl-C",
        description="Start three masters (and their replicas) on consecutive ports, join them into a cluster (or "
        "rejoin the one their folders hold), print the REDIS_URL to use, and stop them on Ctrl-C.",
    )
    start_command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the first node's port; the others take the next ones "
        f"(default {DEFAULT_PORT}; each node's cluster bus takes its port + {BUS_OFFSET})",
    )  # fmt: skip
    start_command.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="data folder, one sub-folder per node (default .data/redis-cluster)",
    )
    start_command.add_argument(
        "--replicas", type=int, default=0, choices=range(3),
        help="replicas of each master, on the ports after the masters' (default 0; the folder's cluster keeps its own)",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        cluster = start(consecutive_ports(args.port, args.replicas), args.dir, args.replicas)
    except ProvisionError as error:
        sys.exit(f"[redis-cluster] {error}")
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(serve(cluster))


if __name__ == "__main__":
    main()
