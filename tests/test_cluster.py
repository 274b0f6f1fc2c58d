"""The services on a real Redis Cluster of three masters (`cluster_url`): one write path for both topologies."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from devtools import redis_cluster, redis_stack
from devtools.stack import Stack
from shared import keys
from shared.pipelined import PipelinedRedis
from shared.protocol import SAVES, SCORES
from tests.conftest import ARTIFACTS, Player, eventually, run_python, started
from tests.test_boards import PERIOD, assert_each_in_its_season, post, post_across_boundaries
from tests.test_faults import Load, wait_for

PARTITIONS = 3
BOARD = "leaderboards:survivor-Scores"


@pytest.fixture(scope="module")
def db(cluster_url: str) -> Iterator[RedisCluster]:
    """A client of the cluster, which it leaves empty for the other modules' tests, as it found it."""
    with RedisCluster.from_url(cluster_url, protocol=3) as client:
        yield client
        client.flushall()  # on every master


@pytest.fixture(scope="module")
def cluster_stack(cluster_url: str, db: RedisCluster) -> Iterator[Stack]:
    """A gateway and a worker of each kind on the cluster, the streams in a partition per master
    (stopped before `db` empties the cluster)."""
    log_file = ARTIFACTS / "logs/cluster_stack.log"
    clocks = {"REQUEST_TIMEOUT_MS": "2000", "CLAIM_IDLE_MS": "3000", "BLOCK_MS": "200"}
    with started(cluster_url, log_file, 1, 1, STREAM_PARTITIONS=str(PARTITIONS), **clocks) as running:
        yield running


def master_of(db: RedisCluster, key: str) -> str:
    return str(db.get_node_from_key(key).name)


def players_on_every_master(stack: Stack, db: RedisCluster, name: str, each: int = 2) -> list[Player]:
    """New players, each saving a document named `name`, until every master holds `each` of them."""
    players: list[Player] = []
    per_master: dict[str, int] = {}
    while len(per_master) < 3 or min(per_master.values()) < each:
        assert len(players) < 60, f"the documents landed on {per_master} only"
        player = Player(stack.url)
        answer = player.save_with_fallback("playerstate", {"name": name, "level": len(players)})
        assert answer.status_code in (200, 201), answer.text
        players.append(player)
        master = master_of(db, keys.player(player.id))
        per_master[master] = per_master.get(master, 0) + 1
    return players


def test_saves_reads_scores_and_search_over_every_master(cluster_stack: Stack, db: RedisCluster) -> None:
    name = f"Cluster{secrets.token_hex(4)}"
    players = players_on_every_master(cluster_stack, db, name)
    first = players[0]
    patched = first.save("playerstate", {"name": name, "level": 99}, "PATCH")  # now it exists: PATCH updates
    assert patched.status_code == 200
    assert first.http.get(f"/api/playerstate/{first.id}").json() == {"id": first.id, "name": name, "level": 99}
    assert db.json().get(keys.player(first.id)) == {"id": first.id, "name": name, "level": 99}

    found = first.http.get("/api/playerstate/search", params={"name": name}).json()
    assert found["total"] == len(players)  # every master's index counted
    assert {hit["value"]["name"] for hit in found["documents"]} == {name}
    for player in players:  # each document found wherever it lives
        by_id = first.http.get("/api/playerstate/search", params={"id": player.id}).json()
        assert (by_id["total"], [hit["id"] for hit in by_id["documents"]]) == (1, [keys.player(player.id)])

    for score, player in enumerate(players[:12], start=1):
        body = {"key": BOARD, "score": score * 100, "member": f"Hero-{player.id}"}
        assert player.http.post("/api/leaderboard", json=body).status_code == 200
    top = first.http.get(f"/api/leaderboard/{BOARD}", params={"count": 10}).json()
    assert [entry["score"] for entry in top] == [score * 100 for score in range(min(12, len(players)), 0, -1)][:10]
    assert db.zscore(BOARD, f"Hero-{players[0].id}") == 100


def test_every_partition_stream_has_a_consumer_on_its_own_master(cluster_stack: Stack, db: RedisCluster) -> None:
    health = Player(cluster_stack.url).http.get("/healthz").json()
    assert health["status"] == 200, health
    streams = [stream.key(n) for stream in (SAVES, SCORES) for n in range(PARTITIONS)]
    assert len({master_of(db, stream) for stream in streams}) > 1, "the partitions spread over the masters"
    for stream in streams:
        assert [group["consumers"] for group in db.xinfo_groups(stream)] == [1]


def test_the_pipelined_client_follows_moved_to_the_new_owner(cluster_url: str, db: RedisCluster) -> None:
    key = "cluster-test:moved"
    owner = master_of(db, key)

    async def body() -> tuple[Any, Any, str]:
        client = PipelinedRedis(cluster_url)
        try:
            await client.discover()
            await client.execute("SET", key, "here", route=key)
            slots = client._slots  # point the key's slot at another master, as a stale map would
            assert slots is not None
            slot = db.keyslot(key)
            wrong = next(server for server in client._servers.values() if server.where != owner)
            slots[slot] = wrong
            answer = await client.execute("GET", key, route=key)
            after = slots is client._slots and slots[slot] is wrong
            fixed = client._slots[slot] if client._slots is not None else None
            return answer, after, fixed.where if fixed is not None else ""
        finally:
            await client.aclose()

    answer, still_wrong, now = asyncio.run(body())
    assert answer == b"here"
    assert not still_wrong and now == owner  # MOVED re-read the map


def test_the_pipelined_client_follows_ask_while_a_slot_migrates(cluster_url: str, db: RedisCluster) -> None:
    """Mid-migration the old owner answers ASK for a key that has gone ahead; once it is done, MOVED."""
    key = "cluster-test:ask"
    db.set(key, "moved ahead")
    slot = db.keyslot(key)
    source = db.get_node_from_key(key)
    target = next(node for node in db.get_primaries() if node.name != source.name)
    ids = {node.name: db.cluster_myid(node) for node in (source, target)}
    db.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.name], target_nodes=target)
    db.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.name], target_nodes=source)
    db.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key, target_nodes=source)

    def finish_migration() -> None:
        for node in db.get_primaries():  # the slot is the target's now
            db.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.name], target_nodes=node)

    async def body() -> list[tuple[Any, str]]:
        client = PipelinedRedis(cluster_url)
        seen: list[tuple[Any, str]] = []

        async def get() -> None:
            answer = await client.execute("GET", key, route=key)
            owner = client._slots[slot] if client._slots is not None else None
            seen.append((answer, owner.where if owner is not None else ""))

        try:
            await client.discover()
            try:
                await get()  # ASK: ASKING, then GET on the target; the map stays as it was
            finally:
                finish_migration()
            await get()  # MOVED: the map is read again
        finally:
            await client.aclose()
        return seen

    assert asyncio.run(body()) == [(b"moved ahead", source.name), (b"moved ahead", target.name)]


def test_a_cluster_that_is_not_ok_is_waited_for_then_named(tmp_path: Path) -> None:
    [port] = redis_cluster.spare_ports(1)  # its bus port, + 10000, must be free (and exist) too
    # A lone cluster node, never joined: it serves no slot, and says cluster_state:fail.
    node = redis_stack.start(port, tmp_path, log_file=tmp_path / "redis.log", extra_args=redis_cluster.CLUSTER_FLAGS)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        code = (
            "import asyncio, os\n"
            "from shared.connection import connect, wait_until_ready\n"
            "url = os.environ['REDIS_URL']\n"
            "asyncio.run(wait_until_ready(connect(url), url, timeout_s=1.5))\n"
        )
        result = run_python(code, {"REDIS_URL": url})
    finally:
        node.kill()
        node.wait()
    assert result.returncode != 0
    assert f"RedisNotReady: the Redis Cluster of {url} says cluster_state:fail after 2 s" in result.stderr
    assert "waiting for Redis" in result.stderr  # it waited first, as for an unreachable Redis
    assert "make run-cluster" in result.stderr


@pytest.mark.slow
def test_sigkill_of_a_saves_worker_mid_load_loses_no_acknowledged_save(cluster_stack: Stack, db: RedisCluster) -> None:
    doomed = "saves-doomed"
    cluster_stack.spawn("saves", doomed)
    eventually(
        lambda: all(group["consumers"] == 2 for n in range(PARTITIONS) for group in db.xinfo_groups(SAVES.key(n))),
        20,
        "the second saves worker joins every partition",
    )
    load = Load.start(cluster_stack, "save", clients=9, writes=120)
    wait_for(load, 200)
    cluster_stack.stop(doomed, signal.SIGKILL)
    load.wait()
    assert load.acked() == 9 * 120, "every client got through, retrying on the live worker"
    load.assert_nothing_lost(db)

    def pending() -> int:
        return sum(int(db.xpending(SAVES.key(n), SAVES.group)["pending"]) for n in range(PARTITIONS))

    eventually(lambda: pending() == 0, 15, "the pending lists drain")


def test_boards_on_a_cluster_one_entry_seasons_and_around_me(tmp_path: Path) -> None:
    """Seasons of 2 seconds and two leaderboard workers, on a cluster of its own (the module's
    workers would take these scores): a score's three actions live in three slots (the current
    board with its index, marker and list; its season's archive; all-time), each applied there."""
    maps = {"LEADERBOARD_MAPS": "Seasonal", "LEADERBOARD_SEASON": PERIOD, "LEADERBOARD_SEASONS_KEPT": "30"}
    clocks = {"REQUEST_TIMEOUT_MS": "2000", "CLAIM_IDLE_MS": "3000", "BLOCK_MS": "200"}
    key = keys.leaderboard("Seasonal")
    with (
        redis_cluster.running(redis_cluster.spare_ports(), tmp_path) as cluster,
        started(
            cluster.url,
            ARTIFACTS / "logs/cluster_boards.log",
            1,
            2,
            STREAM_PARTITIONS=str(PARTITIONS),
            **maps,
            **clocks,
        ) as stack,
        RedisCluster.from_url(cluster.url, decode_responses=True) as db,
    ):
        label = "1796212800"
        slots = {db.keyslot(name) for name in (key, keys.season_board(key, label), keys.all_time_board(key))}
        assert len(slots) == 3
        assert {db.keyslot(name) for name in (key, keys.board_members(key), keys.season_marker(key))} == {
            db.keyslot(key)
        }
        players = [Player(stack.url) for _ in range(4)]
        expected = post_across_boundaries(db, key, players, PARTITIONS)
        assert_each_in_its_season(db, key, players, expected)
        leader = players[0]

        def around_me_answers() -> bool:
            assert post(leader, key, 1_000_000, "Top").status_code == 200
            mine = leader.http.get(f"/api/leaderboard/{key}/me", params={"around": 1})
            if mine.status_code == 404:  # a boundary passed between the two: try again
                return False
            assert mine.json()["value"] == f"Top-{leader.id}" and mine.json()["rank"] == 1
            assert [entry["rank"] for entry in mine.json()["around"]] in ([1], [1, 2])
            return True

        eventually(around_me_answers, 10, "GET .../me finds the leader")
