"""The local Redis Cluster (devtools/redis_cluster.py) that `make run-cluster` and the cluster tests stand on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from devtools import redis_cluster
from devtools.redis_stack import ProvisionError

ROOT = Path(__file__).resolve().parents[1]


def served_slots(port: int) -> dict[int, set[int]]:
    """Each master's port and the slots it serves, as CLUSTER SLOTS tells them."""
    served: dict[int, set[int]] = {}
    with redis.Redis(port=port) as node:
        for first, last, (_, master_port, *_) in node.execute_command("CLUSTER SLOTS"):
            served.setdefault(master_port, set()).update(range(first, last + 1))
    return served


def test_three_masters_with_both_modules_serve_every_slot_and_leave_nothing_behind(tmp_path: Path) -> None:
    ports = redis_cluster.spare_ports()
    with redis_cluster.running(ports, tmp_path) as cluster:
        for port in ports:
            with redis.Redis(port=port) as node:
                info = node.cluster("info")
                assert (info["cluster_state"], info["cluster_size"], info["cluster_known_nodes"]) == ("ok", "3", "3")
                masters = [address for address, peer in node.cluster("nodes").items() if "master" in peer["flags"]]
                assert sorted(masters) == sorted(f"127.0.0.1:{p}" for p in ports)
                assert {b"ReJSON", b"search"} <= {module[b"name"] for module in node.module_list()}
        served = served_slots(ports[0])
        assert set(served) == set(ports)
        assert sum(map(len, served.values())) == redis_cluster.SLOTS
        assert set().union(*served.values()) == set(range(redis_cluster.SLOTS))
        nodes = list(cluster.processes)
    assert [node.returncode for node in nodes] == [0, 0, 0]  # SIGTERM: a clean shutdown
    listening = [p for port in ports for p in (port, port + redis_cluster.BUS_OFFSET) if not redis_cluster.is_free(p)]
    assert listening == []


def test_a_cluster_started_again_on_its_folders_rejoins_with_its_data(tmp_path: Path) -> None:
    ports = redis_cluster.spare_ports()
    keys = [f"players:{n}" for n in range(30)]  # enough to land on every master
    with redis_cluster.running(ports, tmp_path) as cluster, RedisCluster.from_url(cluster.url) as client:
        for key in keys:
            client.json().set(key, "$", {"id": key})
    with redis_cluster.running(ports, tmp_path) as cluster, RedisCluster.from_url(cluster.url) as client:
        assert [client.json().get(key) for key in keys] == [{"id": key} for key in keys]


def test_a_busy_bus_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = redis_cluster.spare_ports()
    busy = socket.create_server(("127.0.0.1", ports[1] + redis_cluster.BUS_OFFSET))
    with busy, pytest.raises(ProvisionError, match=f"the cluster bus of port {ports[1]}"):
        redis_cluster.start(ports, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_cluster_fixture_spreads_json_documents_over_every_master(cluster_url: str) -> None:
    with RedisCluster.from_url(cluster_url) as client:
        for n in range(30):
            client.json().set(f"players:{n}", "$", {"id": str(n)})
        assert [client.json().get(f"players:{n}", "$.id") for n in range(30)] == [[str(n)] for n in range(30)]
        per_master = [client.dbsize(target_nodes=master) for master in client.get_primaries()]
    assert len(per_master) == 3 and all(per_master) and sum(per_master) == 30


@pytest.mark.parametrize("argv", [["--help"], ["start", "--help"]])
def test_the_cluster_command_has_help(argv: list[str]) -> None:
    command = [sys.executable, "-m", "devtools.redis_cluster", *argv]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout
