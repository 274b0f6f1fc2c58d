"""The services on a real Redis Cluster of three masters (`cluster_url`): one write path for both topologies."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from devtools import redis_cluster, redis_stack
from devtools.stack import Stack
from services.gateway.sessions import placed_session_id
from services.gateway.store import Command as StoreCommand
from services.gateway.store import RateLimit, Store
from services.saves.handlers import handlers
from shared import keys
from shared.pipelined import PipelinedRedis
from shared.protocol import SAVES, SCORES, CommandStream, Event, EventType, Outcome, now_ms, partition_of
from shared.settings import Settings
from shared.worker import Command, Entry, Partition, Worker
from tests.conftest import ARTIFACTS, TEST_MAPS, Player, eventually, run_python, started
from tests.test_boards import PERIOD, UNLIMITED, assert_each_in_its_season, post, post_across_boundaries
from tests.test_faults import NO_SESSION_LIMIT, Load, wait_for
from tests.test_live import Listener
from tests.test_recovery import carried_to_another_browser, issue, recover
from tests.test_runs import race

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
    """A gateway and a worker of each kind on the cluster (stopped before `db` empties the cluster). Its
    three partitions' streams live on two of the three masters (where their tags' slots fall), so
    sessions of both kinds are made: placed on their partition's master, and not (placed_session_id)."""
    log_file = ARTIFACTS / "logs/cluster_stack.log"
    clocks = {"REQUEST_TIMEOUT_MS": "2000", "CLAIM_IDLE_MS": "3000", "BLOCK_MS": "200"}
    with started(
        cluster_url, log_file, 1, 1, STREAM_PARTITIONS=str(PARTITIONS), **clocks, **NO_SESSION_LIMIT
    ) as running:
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


def test_versions_merges_and_deletes_in_every_documents_own_slot(cluster_stack: Stack, db: RedisCluster) -> None:
    """Each check and its write are one script in the document's slot, wherever that slot lives."""
    merge = {"content-type": "application/merge-patch+json"}
    for player in players_on_every_master(cluster_stack, db, f"Versions{secrets.token_hex(4)}", each=1):
        me, key = f"/api/playerstate/{player.id}", keys.player(player.id)
        first = player.http.get(me).headers["etag"]
        assert first == f'"{db.json().get(keys.version(key))}"'  # the version key holds a JSON string
        body = {"playerData": {"id": player.id, "name": "Hero", "level": 1, "bag": ["a"]}}
        second = player.http.patch("/api/playerstate", json=body, headers={"If-Match": first})
        assert second.status_code == 200 and second.headers["etag"] != first
        before = db.json().get(key)
        stale = player.http.patch("/api/playerstate", json=body, headers={"If-Match": first})
        assert (stale.status_code, stale.json()["status"], db.json().get(key)) == (412, 412, before)
        assert player.http.post("/api/playerstate", json=body, headers={"If-None-Match": "*"}).status_code == 412

        patch = orjson.dumps({"playerData": {"id": player.id, "level": 2, "bag": None}})
        merged = player.http.patch(
            "/api/playerstate", content=patch, headers={**merge, "If-Match": second.headers["etag"]}
        )
        assert merged.status_code == 200
        assert db.json().get(key) == {"id": player.id, "name": "Hero", "level": 2}
        # Each patch within the limits, the two together past them: the worker refuses the second.
        grow = orjson.dumps({"playerData": {"id": player.id, "many": list(range(600))}})
        assert player.http.patch("/api/playerstate", content=grow, headers=merge).status_code == 200
        again = orjson.dumps({"playerData": {"id": player.id, "more": list(range(600))}})
        before = db.json().get(key)
        assert player.http.patch("/api/playerstate", content=again, headers=merge).status_code == 413
        assert db.json().get(key) == before

        deleted = player.http.delete(me)
        assert (deleted.status_code, deleted.json()["message"]) == (200, "Player deleted")
        assert db.exists(key) == 0 and db.ttl(keys.version(key)) > 0
        assert player.http.get(me).status_code == 404


def test_every_partition_stream_has_a_consumer_on_its_own_master(cluster_stack: Stack, db: RedisCluster) -> None:
    health = Player(cluster_stack.url).http.get("/healthz").json()
    assert health["status"] == 200, health
    streams = [stream.key(n) for stream in (SAVES, SCORES) for n in range(PARTITIONS)]
    assert len({master_of(db, stream) for stream in streams}) > 1, "the partitions spread over the masters"
    for stream in streams:
        assert [group["consumers"] for group in db.xinfo_groups(stream)] == [1]


def test_a_recovery_code_carries_a_player_and_revokes_across_masters(cluster_stack: Stack, db: RedisCluster) -> None:
    carried_to_another_browser(cluster_stack.url, db)
    player = Player(cluster_stack.url)
    for _ in range(30):  # until the code's entry and the player's record live on different masters
        old = issue(player)
        stored = db.get(keys.recovery_player(player.id))
        assert isinstance(stored, bytes)
        old_entry = keys.recovery_code(stored.decode())
        if master_of(db, old_entry) != master_of(db, keys.recovery_player(player.id)):
            break
    else:
        pytest.fail("every code's entry landed on its player's master")
    new = issue(player)
    assert recover(cluster_stack.url, old).status_code == 403
    assert not db.exists(old_entry)
    assert recover(cluster_stack.url, new).json() == {"id": player.id}


def test_live_tops_of_boards_on_different_masters(cluster_stack: Stack, db: RedisCluster) -> None:
    """Each board's live stream is in its board's slot (the worker's script reads the one and appends
    to the other); the gateway reads the streams one per board, wherever they live."""
    boards = [keys.leaderboard(name) for name in TEST_MAPS.split(",")]
    for board in boards:
        assert db.keyslot(keys.live_top(board)) == db.keyslot(board)
    apart = {master_of(db, board): board for board in boards}
    assert len(apart) > 1, "the boards spread over the masters"
    player = Player(cluster_stack.url)
    for board in list(apart.values())[:2]:
        listener = Listener(cluster_stack.url, board)
        try:
            listener.next_top()  # whatever the other tests left there
            body = {"key": board, "score": 999_999_999, "member": f"Live-{player.id}"}
            assert player.http.post("/api/leaderboard", json=body).status_code == 200
            assert listener.next_top()[0] == {"value": body["member"], "score": 999_999_999, "rank": 1}
        finally:
            listener.close()


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


def migrate_ahead(db: RedisCluster, *moved: str) -> tuple[Any, Any, Callable[[], None]]:
    """Begin moving the slot of `moved` (keys of one slot) to another master, and move those keys
    ahead: the old owner answers ASK for them. The source node, the target node, and what ends the
    migration (the slot the target's)."""
    slot = db.keyslot(moved[0])
    source = db.get_node_from_key(moved[0])
    target = next(node for node in db.get_primaries() if node.name != source.name)
    ids = {node.name: db.cluster_myid(node) for node in (source, target)}
    db.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.name], target_nodes=target)
    db.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.name], target_nodes=source)
    db.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *moved, target_nodes=source)

    def finish() -> None:  # with the slot's other keys (earlier tests'), or the source refuses to let go
        left = db.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000, target_nodes=source)
        if left:
            db.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *left, target_nodes=source)
        for node in db.get_primaries():
            db.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.name], target_nodes=node)

    return source, target, finish


def test_the_pipelined_client_follows_ask_while_a_slot_migrates(cluster_url: str, db: RedisCluster) -> None:
    """Mid-migration the old owner answers ASK for a key that has gone ahead; once it is done, MOVED."""
    key = "cluster-test:ask"
    db.set(key, "moved ahead")
    slot = db.keyslot(key)
    source, target, finish_migration = migrate_ahead(db, key)

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
@pytest.mark.parametrize(
    ("service", "kind"),
    [("saves", "save"), ("saves", "conditional"), ("saves", "merge"), ("saves", "delete"), ("leaderboard", "score")],
)
def test_sigkill_of_one_of_two_workers_while_16_players_write_loses_no_acknowledged_write(
    cluster_stack: Stack, db: RedisCluster, service: str, kind: str
) -> None:
    """At most the write each player had in flight at the kill goes unanswered (504, past its deadline:
    the dead worker held it); every player retries and gets through on the live worker."""
    doomed = f"{service}-doomed"
    pid = cluster_stack.spawn(service, doomed).pid
    stream = SAVES if service == "saves" else SCORES

    def joined(n: int) -> bool:
        names = [consumer["name"] for consumer in db.xinfo_consumers(stream.key(n), stream.group)]
        return any(f"-{pid}-" in (name.decode() if isinstance(name, bytes) else name) for name in names)

    eventually(lambda: all(joined(n) for n in range(PARTITIONS)), 20, f"the second {service} worker joins")
    load = Load.start(cluster_stack, kind, clients=16, writes=80)
    wait_for(load, 300)
    cluster_stack.stop(doomed, signal.SIGKILL)
    load.wait()
    assert load.acked() == 16 * 80, "every client got through, retrying on the live worker"
    load.assert_nothing_lost(db)
    failures = [status for client in load.clients for status, _ in client.failures]
    assert len(failures) <= 16 and set(failures) <= {503, 504}, failures

    def pending() -> int:
        return sum(int(db.xpending(stream.key(n), stream.group)["pending"]) for n in range(PARTITIONS))

    eventually(lambda: pending() == 0, 15, "the pending lists drain")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["save", "score"])
def test_32_players_writing_at_once_are_each_answered_2xx(cluster_stack: Stack, db: RedisCluster, kind: str) -> None:
    """Many players at once, as a game has them: a batch holds many documents of many slots on every
    master, and each is answered 2xx within its deadline (not one Redis call per slot)."""
    load = Load.start(cluster_stack, kind, clients=32, writes=25)
    load.wait()
    assert [client.failures for client in load.clients] == [[]] * 32, "no answer but a 2xx"
    assert load.acked() == 32 * 25
    load.assert_nothing_lost(db)


def test_the_dead_letter_tool_lists_the_letters_of_every_master(cluster_stack: Stack, db: RedisCluster) -> None:
    streams = [keys.dead_letters(n) for n in range(PARTITIONS)]
    assert len({master_of(db, stream) for stream in streams}) > 1, "the dead letters spread over the masters"
    token = secrets.token_hex(8)
    for n in range(PARTITIONS):
        db.xadd(SAVES.key(n), {"v": "1", "nonsense": token})  # an entry no worker can read

    def ours() -> list[tuple[str, str]]:
        """This test's letters: (stream, id); two masters may give two of them the same id."""
        return [
            (stream, entry_id.decode())
            for stream in streams
            for entry_id, fields in cast(list[Entry], db.xrange(stream))
            if fields.get(b"nonsense") == token.encode()
        ]

    eventually(lambda: {stream for stream, _ in ours()} == set(streams), 10, "each partition dead-letters its entry")
    listed = run_tool(cluster_stack, "list", "--count", "1000")
    assert listed.returncode == 0, listed.stderr
    assert {letter for _, letter in ours()} <= set(listed.stdout.split()), listed.stdout  # wherever each lives
    for _stream, letter in ours():
        dropped = run_tool(cluster_stack, "drop", letter)
        assert dropped.returncode == 0, dropped.stderr
    assert ours() == []


def run_tool(stack: Stack, *args: str) -> Any:
    return run_python(
        f"import sys; sys.argv = ['deadletters', *{list(args)!r}]\nfrom devtools.deadletters import main; main()",
        {**stack.env},
    )


@pytest.mark.slow
def test_a_lost_master_is_answered_in_json_and_every_player_saves_again_once_it_is_back(tmp_path: Path) -> None:
    """Without a replica to take over, a lost master's slots go unserved, and after cluster-node-timeout
    the others refuse too (cluster-require-full-coverage): the services wait it out, none exits."""
    ports = redis_cluster.spare_ports()
    data_dir = tmp_path / "cluster"
    cluster = redis_cluster.start(ports, data_dir)
    try:
        with (
            RedisCluster.from_url(cluster.url, protocol=3) as client,
            started(cluster.url, ARTIFACTS / "logs/lost_master.log", 1, 1, STREAM_PARTITIONS=str(PARTITIONS)) as stack,
        ):
            players = players_on_every_master(stack, client, "Lost", each=3)
            doomed_port = ports[2]  # not the node of REDIS_URL
            doomed = f"127.0.0.1:{doomed_port}"

            def lives_on_doomed(player: Player) -> bool:
                partition = partition_of(player.id, PARTITIONS)
                touched = (keys.session(player.id), keys.player(player.id), SAVES.key(partition))
                return any(master_of(client, key) == doomed for key in touched)

            hit = next(player for player in players if lives_on_doomed(player))
            cluster.processes[2].kill()
            cluster.processes[2].wait()

            health = hit.http.get("/healthz")
            # Unreachable at first; once the others mark it failed (cluster-node-timeout), the cluster is down.
            assert health.status_code == 503 and {"unreachable", "cluster down"} & {health.json()["checks"]["redis"]}
            assert hit.http.get("/livez").status_code == 200
            answer = hit.save("playerstate", {"name": "Lost", "level": 100})
            assert answer.status_code in (500, 503, 504), answer.text
            assert answer.json()["status"] == answer.status_code  # JSON, never a stack trace

            cluster.processes[2] = redis_stack.start(
                doomed_port,
                data_dir / str(doomed_port),
                log_file=redis_cluster.log_of(doomed_port, data_dir),
                extra_args=redis_cluster.CLUSTER_FLAGS,
            )
            redis_cluster.wait_until_ok(ports, data_dir)
            eventually(lambda: hit.http.get("/healthz").status_code == 200, 30, "the gateway sees every master again")
            eventually(
                lambda: hit.save("playerstate", {"name": "Lost", "level": 101}).status_code == 200,
                30,
                "the lost master's player saves again",
            )
            assert hit.http.get(f"/api/playerstate/{hit.id}").json()["level"] == 101
            for player in players:
                assert player.save("playerstate", {"name": "Lost", "level": 102}).status_code == 200
            assert all(process.poll() is None for process in stack.processes.values())
    finally:
        cluster.stop()


def test_an_account_erase_reaches_every_master_and_waits_for_a_lost_one(tmp_path: Path) -> None:
    """A player's keys on every master; with one master lost the erase is a JSON 503 that wrote
    nothing, and once it is back the retry erases it all (export before, nothing after)."""
    ports = redis_cluster.spare_ports()
    data_dir = tmp_path / "cluster"
    cluster = redis_cluster.start(ports, data_dir)
    maps = {"LEADERBOARD_MAPS": "Grassland,Mountains,Badlands,Scores,Empty,Recovered", "LEADERBOARD_SEASON": "weekly"}
    try:
        with (
            RedisCluster.from_url(cluster.url, decode_responses=True) as client,
            started(
                cluster.url, ARTIFACTS / "logs/erase_lost_master.log", 1, 1, STREAM_PARTITIONS="3", **maps
            ) as stack,
        ):
            boards = [keys.leaderboard(name) for name in maps["LEADERBOARD_MAPS"].split(",")]
            doomed = f"127.0.0.1:{ports[2]}"
            player = Player(stack.url)
            while (
                master_of(client, keys.session(player.id)) == doomed
                or master_of(client, SCORES.key(partition_of(player.id, 3))) == doomed
            ):
                player = Player(stack.url)
            assert player.save("playerstate", {"name": "Gone"}, "POST").status_code == 200
            assert player.save("gamestate", {"chapter": 1}, "POST").status_code == 200
            for board in boards:
                assert post(player, board, 10, "Gone").status_code == 200
            assert player.http.post("/session/recovery").status_code == 200
            held = {master_of(client, entry["key"]) for entry in player.http.get("/api/account").json()["leaderboards"]}
            assert held == {f"127.0.0.1:{port}" for port in ports}

            cluster.processes[2].kill()
            cluster.processes[2].wait()
            refused = player.http.delete("/api/account")
            assert refused.status_code == 503 and refused.json()["status"] == 503
            cluster.processes[2] = redis_stack.start(
                ports[2],
                data_dir / str(ports[2]),
                log_file=redis_cluster.log_of(ports[2], data_dir),
                extra_args=redis_cluster.CLUSTER_FLAGS,
            )
            redis_cluster.wait_until_ok(ports, data_dir)
            eventually(lambda: player.http.get("/healthz").status_code == 200, 30, "every master is back")
            assert all(client.zscore(board, f"Gone-{player.id}") == 10 for board in boards)  # nothing half-done
            erased = player.http.delete("/api/account")
            assert erased.status_code == 200, erased.text
            assert not client.exists(keys.player(player.id), keys.game(player.id), keys.session(player.id))
            assert not client.exists(keys.recovery_player(player.id))
            for board in boards:
                assert client.zscore(board, f"Gone-{player.id}") is None
                assert client.zscore(keys.all_time_board(board), f"Gone-{player.id}") is None
    finally:
        cluster.stop()


def test_boards_on_a_cluster_one_entry_seasons_and_around_me(tmp_path: Path) -> None:
    """Seasons of 2 seconds and two leaderboard workers, on a cluster of its own (the module's
    workers would take these scores): a score's three actions live in three slots (the current
    board with its index, marker and list; its season's archive; all-time), each applied there."""
    maps = {"LEADERBOARD_MAPS": "Seasonal", "LEADERBOARD_SEASON": PERIOD, "LEADERBOARD_SEASONS_KEPT": "30", **UNLIMITED}
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


def test_verified_runs_on_a_cluster_are_checked_on_their_boards_master(cluster_stack: Stack, db: RedisCluster) -> None:
    """The run lives in its board's slot, started at its command's stream entry time on the partition's
    master; the score checks and marks it in the same script as its write, wherever the board is."""
    player = Player(cluster_stack.url)
    other = Player(cluster_stack.url)
    assert master_of(db, keys.run(BOARD, "0" * 32)) == master_of(db, BOARD)
    started_runs = [player.http.post(f"/api/leaderboard/{BOARD}/runs").json()["run"] for _ in range(3)]
    time.sleep(1.1)  # RUN_MIN_S's default
    for run in started_runs:
        assert other.http.post("/api/leaderboard", json={"key": BOARD, "score": 5, "member": f"Hero-{other.id}",
                                                         "run": run}).status_code == 403  # fmt: skip
        assert sorted(race(cluster_stack, player, run, 10, BOARD)) == [200, 409]
    assert db.zscore(BOARD, f"Hero-{other.id}") is None
    assert db.zscore(BOARD, f"Hero-{player.id}") is not None


def test_a_save_and_its_version_are_read_while_their_slot_migrates(cluster_url: str, db: RedisCluster) -> None:
    """Mid-migration the one JSON.MGET follows ASK; once the slot has moved, MOVED."""
    key = keys.player("cluster-test-migrating")
    db.execute_command("JSON.SET", key, "$", '{"level": 3}')
    db.execute_command("JSON.SET", keys.version(key), "$", '"1700000000000-0"')
    _, _, finish_migration = migrate_ahead(db, key, keys.version(key))

    async def body() -> list[tuple[bytes | None, str | None]]:
        store = Store(PipelinedRedis(cluster_url))
        try:
            await store.redis.discover()
            try:
                during = await store.versioned_document(key)  # ASK
            finally:
                finish_migration()
            return [during, await store.versioned_document(key)]  # MOVED: followed
        finally:
            await store.aclose()

    assert asyncio.run(body()) == [(b'{"level":3}', "1700000000000-0")] * 2


def test_new_sessions_share_their_partitions_master_and_spread_over_every_master(
    cluster_stack: Stack, db: RedisCluster
) -> None:
    """GET /session draws an id whose session, player's save and command partition share a master, where
    one of the partitions lives (placed_session_id); the sessions still spread over every master."""
    partition_masters = {master_of(db, SAVES.key(n)) for n in range(PARTITIONS)}
    per_master: dict[str, int] = {}
    placed = 0
    for _ in range(60):
        player = Player(cluster_stack.url)
        session = master_of(db, keys.session(player.id))
        per_master[session] = per_master.get(session, 0) + 1
        if session in partition_masters:
            assert master_of(db, keys.player(player.id)) == session
            assert master_of(db, SAVES.key(partition_of(player.id, PARTITIONS))) == session
            placed += 1
    assert len(per_master) == 3 and min(per_master.values()) >= 6, per_master
    assert placed >= 20, "most sessions fall on a master with a partition"


def test_a_placed_players_saves_run_scripts_on_their_own_master_only(cluster_stack: Stack, db: RedisCluster) -> None:
    """A placed session's save is admitted (its session checked by the admission script) and applied
    by its partition's settle script, both on the one master of its session, save and partition: the
    other masters run no script for it (no apply.lua call, as an unplaced save's would be)."""
    partition_masters = {master_of(db, SAVES.key(n)) for n in range(PARTITIONS)}
    home = ""
    players: list[Player] = []
    for _ in range(60):
        player = Player(cluster_stack.url)
        session = master_of(db, keys.session(player.id))
        if session in partition_masters and home in ("", session):
            home = session
            players.append(player)
        if len(players) == 4:
            break
    assert len(players) == 4, "four sessions placed on one master"

    before = script_calls_by_master(db)
    for n, player in enumerate(players):
        answer = player.save("playerstate", {"name": "Placed", "level": n}, "POST")
        assert answer.status_code == 200, answer.text
    after = script_calls_by_master(db)
    elsewhere = {node: after[node] - before[node] for node in after if node != home}
    assert set(elsewhere.values()) == {0}, elsewhere
    assert after[home] - before[home] >= 2 * len(players), "an admission and a settle call a save"


def test_a_session_whose_slot_moved_is_checked_on_its_new_master(cluster_url: str, db: RedisCluster) -> None:
    """admit.lua reads the session among its own master's slots. Once the session's slot has moved to
    another master behind the gateway's map, the script says so (nothing counted or published) and the
    session is checked where it lives now: a live one's command is published once, a gone one's not."""

    async def body() -> tuple[list[int | str | None], int, float]:
        store = Store(PipelinedRedis(cluster_url))
        try:
            await store.redis.discover()

            def placed(session_id: str) -> bool:
                stream = SAVES.key(partition_of(session_id, PARTITIONS))
                return store.master_of(keys.session(session_id)) == store.master_of(stream)

            # A third of the ids fall on the master that serves none of the three partitions: not placed.
            session_id = next(filter(placed, (placed_session_id(store, PARTITIONS) for _ in range(100))))
            session, stream = keys.session(session_id), SAVES.key(partition_of(session_id, PARTITIONS))
            db.set(session, "{}")
            _, _, finish_migration = migrate_ahead(db, session)
            finish_migration()  # the session's slot is another master's; the store's map does not know
            # 100 a minute: each hit counted moves the limit's arrival time 600 ms on.
            limit = RateLimit(keys.write_limit(partition_of(session_id, PARTITIONS), "test", session_id), 100, 60_000)
            command = StoreCommand(stream, "0-0", {b"test": session_id.encode()})
            answers = [await store.admit_and_publish([limit], command, session)]
            db.delete(session)
            answers.append(await store.admit_and_publish([limit], command, session))
            entries = cast(list[Entry], db.xrange(stream))
            published = sum(fields.get(b"test") == session_id.encode() for _, fields in entries)
            return answers, published, float(db.get(limit.key) or 0) - now_ms()
        finally:
            await store.aclose()

    answers, published, ahead_ms = asyncio.run(body())
    assert isinstance(answers[0], str) and answers[1] is None, answers
    assert published == 1
    assert 0 < ahead_ms <= 600, "counted once"


def batch_of_saves(worker: Worker, players: int, level: int) -> tuple[list[Event], list[Command]]:
    """A batch of `players` new players' saves (their documents spread over every master), as commands."""
    events = [Event.new(EventType.PLAYER_CREATE, secrets.token_hex(8), None, 30_000, 0) for _ in range(players)]
    for event in events:
        event.payload = {"id": event.session, "level": level}
    commands = [
        Command(worker.action(event, "test"), f"{now_ms()}-{n}", event.deadline_ms) for n, event in enumerate(events)
    ]
    return events, commands


def script_calls_by_master(db: RedisCluster) -> dict[str, int]:
    """Each master's count of script calls (EVALSHA) so far, by its address."""
    stats = db.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    return {node: int(each.get("cmdstat_evalsha", {}).get("calls", 0)) for node, each in stats.items()}


def script_calls(db: RedisCluster) -> int:
    return sum(script_calls_by_master(db).values())


def test_a_batch_of_many_slots_is_applied_in_one_call_per_master_within_the_pool(
    cluster_url: str, db: RedisCluster
) -> None:
    """48 players' documents in 48 slots: three apply calls, on a pool of 2 * partitions + 2 a master."""
    settings = Settings(redis_url=cluster_url, session_secret=secrets.token_hex(24))

    async def scenario() -> tuple[list[Event], list[int | str], int]:
        worker = Worker(SAVES, handlers(settings), settings)
        await worker.connect()
        try:
            await Partition(worker, 0)._apply(batch_of_saves(worker, 12, 0)[1])  # the script loaded on each master
            events, commands = batch_of_saves(worker, 48, 7)
            before = script_calls(db)
            outcomes = await Partition(worker, 0)._apply(commands)
            return events, outcomes, script_calls(db) - before
        finally:
            await worker.aclose()

    events, outcomes, calls = asyncio.run(scenario())
    assert outcomes == [Outcome.APPLIED] * 48
    assert len({db.keyslot(keys.player(event.session)) for event in events}) > 40
    assert calls == 3, "a call per master"
    for event in events:
        assert db.json().get(keys.player(event.session)) == {"id": event.session, "level": 7}


def test_a_batch_whose_slot_moves_mid_migration_is_applied_once_it_can_be(cluster_url: str, db: RedisCluster) -> None:
    """A document gone ahead to another master mid-migration: the master-wide call writes nothing and
    says so, and the slot's own call follows ASK (ASKING and the script down one connection of the
    pipelined client). Once the slot has moved, the worker's stale map meets MOVED, which is followed:
    every command applied once."""
    settings = Settings(redis_url=cluster_url, session_secret=secrets.token_hex(24))

    async def scenario() -> tuple[list[int | str], list[int | str], list[int | str]]:
        worker = Worker(SAVES, handlers(settings), settings)
        await worker.connect()
        try:
            events, commands = batch_of_saves(worker, 12, 1)
            assert await Partition(worker, 0)._apply(commands) == [Outcome.APPLIED] * 12
            moved = keys.player(events[0].session)
            _, target, finish_migration = migrate_ahead(db, moved, keys.version(moved))
            for event in events:
                event.payload["level"] = 2
            during = commands_again(worker, events)
            try:
                first_try = await Partition(worker, 0)._apply(during)
            finally:
                finish_migration()
            again = await Partition(worker, 0)._apply(during)  # as the loop retries it (a redelivery)
            assert db.execute_command("EXISTS", moved, target_nodes=target) == 1, "the document went ahead"
            for event in events:
                event.payload["level"] = 3
            after = await Partition(worker, 0)._apply(commands_again(worker, events))
            return first_try, again, after
        finally:
            await worker.aclose()

    first_try, again, after = asyncio.run(scenario())
    assert first_try == [Outcome.APPLIED] * 12, "applied mid-migration"
    assert again == [Outcome.SUPERSEDED] * 12, "a redelivery finds its own version"
    assert after == [Outcome.APPLIED] * 12


def commands_again(worker: Worker, events: list[Event]) -> list[Command]:
    """The events' commands again, each newer than the last (its version a later stream id)."""
    time.sleep(0.002)
    return [
        Command(worker.action(event, "test"), f"{now_ms()}-{n}", event.deadline_ms) for n, event in enumerate(events)
    ]


def blocked_clients(info: dict[str, Any]) -> int:
    """`INFO clients`' count of blocked clients, as RedisCluster answers for one node or per node."""
    if "blocked_clients" in info:
        return int(info["blocked_clients"])
    return sum(int(section["blocked_clients"]) for section in info.values())


def test_an_exhausted_connection_pool_is_logged_as_a_bug_and_retried_at_once(
    cluster_url: str, db: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Held on purpose: every connection of the worker's redis-py pool to its partition's master (its
    sweep's) busy in a BLPOP, and a sweep due every 0.15 s. The loop does not take it for Redis
    unreachable (a second's wait a retry); it says it is our bug and tries again shortly, and the
    command is answered as soon as a connection frees."""
    stream = CommandStream("pool-test", "pool-test", SAVES.events)
    settings = Settings(
        redis_url=cluster_url,
        session_secret=secrets.token_hex(24),
        block_ms=100,
        claim_idle_ms=300,
        request_timeout_ms=200,
    )

    async def scenario() -> float:
        worker = Worker(stream, handlers(settings), settings)
        await worker.connect()
        try:
            partition = Partition(worker, 0)
            await partition._ensure_group()
            running = asyncio.create_task(partition.run())
            await asyncio.sleep(0.5)
            hold = 1.0
            started_at = time.monotonic()

            async def hold_a_connection(n: int) -> None:
                await worker.redis.blpop([f"pool-test:{{0}}:hold{n}"], timeout=hold)

            # Every connection of the pool (the partitions' reads and scripts go through the pipelined client).
            holders = [asyncio.create_task(hold_a_connection(n)) for n in range(settings.stream_partitions + 1)]
            # Until each holder's BLPOP is in: a loaded box makes its connections slowly.
            node = db.get_node_from_key("pool-test:{0}:hold0")
            while blocked_clients(db.info("clients", target_nodes=node)) < len(holders):
                assert time.monotonic() - started_at < 10, "the holders have their connections"
                await asyncio.sleep(0.01)
            event, _ = batch_of_saves(worker, 1, 5)
            started_at = time.monotonic()
            await db_async_xadd(cluster_url, stream.key(0), event[0])
            while db.exists(event[0].reply_to) == 0:
                assert time.monotonic() - started_at < 10, "answered once a connection freed"
                await asyncio.sleep(0.02)
            took = time.monotonic() - started_at
            await asyncio.gather(*holders)
            worker.stop()
            await running
            return took
        finally:
            await worker.aclose()

    with caplog.at_level(logging.INFO, logger="shared.worker"):
        took = asyncio.run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert any("pool is exhausted" in message for message in messages), messages
    assert not any("unreachable" in message for message in messages), messages
    assert took < 2.0, f"answered {took:.2f} s after it was sent: no second-long wait on a retry"


async def db_async_xadd(cluster_url: str, stream: str, event: Event) -> None:
    async with AsyncRedisCluster.from_url(cluster_url) as client:
        await client.xadd(stream, event.encode())  # type: ignore[arg-type]


def test_a_batch_settled_on_a_stale_slot_map_is_applied_where_its_documents_went(
    cluster_url: str, db: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The settle script applies the commands whose documents its partition's master serves; one
    whose slot has moved since the worker read the map makes it write nothing (ELSEWHERE), and the
    batch is applied through MOVED, then answered and acknowledged."""
    stream = CommandStream("stale-map-test", "stale-map-test", SAVES.events)
    settings = Settings(redis_url=cluster_url, session_secret=secrets.token_hex(24))

    async def scenario() -> tuple[Event, Any]:
        worker = Worker(stream, handlers(settings), settings)
        await worker.connect()
        try:
            partition = Partition(worker, 0)
            await partition._ensure_group()
            await partition._read(0)
            own = master_of(db, stream.key(0))
            events: list[Event] = []
            while len(events) < 2:  # two documents on the partition's master
                (event,), _ = batch_of_saves(worker, 1, 1)
                if master_of(db, keys.player(event.session)) == own:
                    events.append(event)
            for event in events:
                await worker.redis.xadd(stream.key(0), event.encode())  # type: ignore[arg-type]
            (batch,) = partition._prepare(await partition._read(100))
            moved = keys.player(events[0].session)
            db.json().set(moved, "$", {"id": events[0].session, "level": 0})
            _, _, finish_migration = migrate_ahead(db, moved)
            finish_migration()  # the slot is the other master's; the worker's map does not know yet
            await partition._settle(batch)
            return events[0], db.xpending(stream.key(0), stream.group)["pending"]
        finally:
            await worker.aclose()

    with caplog.at_level(logging.INFO, logger="shared.worker"):
        event, pending = asyncio.run(scenario())
    assert any("slot map moved" in record.getMessage() for record in caplog.records)
    assert db.json().get(keys.player(event.session)) == {"id": event.session, "level": 1}
    assert pending == 0
    replies: Any = db.xrange(event.reply_to)
    assert replies[0][1][b"status"] == b"200"
