"""Verified runs: a score a client cannot simply invent (API.md, v3). Each refusal is JSON and writes
nothing: not the board, not its season's archive, not all-time, and the run stays as it was."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from devtools.stack import Stack
from shared import keys, seasons
from shared.settings import RunBounds, Settings
from tests.conftest import Player, own_stack

MAPS = "Verified,Open,Short,Slow"
VERIFIED, OPEN, SHORT, SLOW = (keys.leaderboard(name) for name in MAPS.split(","))
# Defaults: no minimum and a flat bound of 1000; Short expires in 2 s; Slow needs 1 s and earns 100 a second.
ENV = {
    "LEADERBOARD_MAPS": MAPS,
    "LEADERBOARD_VERIFIED": "Verified,Short,Slow",
    "LEADERBOARD_SEASON": "weekly",
    "RUN_MIN_S": "0",
    "RUN_SCORE_PER_S": "0",
    "RUN_SCORE_BASE": "1000",
    "RUN_BOUNDS": "Short:0:2::,Slow:1::100:0",
}
Db = redis.Redis | RedisCluster


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, "runs", **ENV) as running:
        yield running


@pytest.fixture(scope="module")
def db(runs: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(runs.redis_url, decode_responses=True) as client:
        yield client


def start(player: Player, board: str) -> httpx.Response:
    return player.http.post(f"/api/leaderboard/{board}/runs")


def new_run(player: Player, board: str) -> str:
    answer = start(player, board)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["run"]
    return token


def post(player: Player, board: str, score: float, run: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"key": board, "score": score, "member": f"Hero-{player.id}"}
    if run is not None:
        body["run"] = run
    return player.http.post("/api/leaderboard", json=body)


def written(db: Db, board: str, player: Player) -> list[Any]:
    """The player's entries on the board, its current season's archive and all-time."""
    label = seasons.season_at("weekly", int(time.time() * 1000)).label
    member = f"Hero-{player.id}"
    boards = (board, keys.season_board(board, label), keys.all_time_board(board))
    return [db.zscore(key, member) for key in boards]


def refused(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == status and words in body["message"], body


def test_a_run_starts_on_the_servers_clock_and_carries_one_score(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    seconds, micros = db.time()
    answer = start(player, VERIFIED)
    assert answer.status_code == 200, answer.text
    run, started_at = answer.json()["run"], answer.json()["startedAt"]
    assert abs(started_at - (seconds * 1000 + micros // 1000)) < 2000
    assert db.ttl(keys.run(VERIFIED, run.rpartition(".")[2])) > 3000  # RUN_MAX_S's default, an hour
    assert post(player, VERIFIED, 1000, run).status_code == 200  # exactly at the bound
    assert written(db, VERIFIED, player) == [1000, 1000, 1000]
    refused(post(player, VERIFIED, 900, run), 409, "carried a score already")  # replayed


def test_a_verified_board_refuses_a_score_without_a_run(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    refused(post(player, VERIFIED, 10), 403, "only with a run")
    assert written(db, VERIFIED, player) == [None, None, None]
    assert post(player, OPEN, 10).status_code == 200  # the seed's client, on a board that is not verified


def test_a_score_past_the_bound_writes_nothing_and_leaves_the_run(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    run = new_run(player, VERIFIED)
    refused(post(player, VERIFIED, 1000.5, run), 422, "above what the run's time allows")
    assert written(db, VERIFIED, player) == [None, None, None]
    assert post(player, VERIFIED, 1000, run).status_code == 200


def test_another_players_run_is_refused(runs: Stack, db: redis.Redis) -> None:
    owner, thief = Player(runs.url), Player(runs.url)
    run = new_run(owner, VERIFIED)
    refused(post(thief, VERIFIED, 500, run), 403, "another player's")
    assert written(db, VERIFIED, thief) == [None, None, None]
    assert post(owner, VERIFIED, 500, run).status_code == 200  # still the owner's to use


def test_another_boards_forged_and_truncated_runs_are_refused(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    other = new_run(player, OPEN)
    refused(post(player, VERIFIED, 5, other), 403, "another leaderboard's")
    for token in (
        "Verified." + os.urandom(16).hex(),  # forged: the shape of one, issued by no server
        "Open." + os.urandom(16).hex(),
        other[:-1],  # truncated
        other.partition(".")[2],  # its map cut off
        "x",
        "Nowhere." + os.urandom(16).hex(),
    ):
        refused(post(player, VERIFIED, 5, token), 410, "Unknown or expired run")
    assert written(db, VERIFIED, player) == [None, None, None]
    refused(player.http.post("/api/leaderboard", json={"key": VERIFIED, "score": 5, "member": f"Hero-{player.id}",
                                                       "run": 7}), 400, "")  # fmt: skip
    refused(player.http.post("/api/leaderboard/leaderboards:survivor-Nowhere/runs"), 400, "Unknown leaderboard")
    assert player.http.post("/api/leaderboard/x/runs").json()["status"] == 400


def test_an_expired_run_is_gone(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    run = new_run(player, SHORT)
    time.sleep(2.2)
    refused(post(player, SHORT, 5, run), 410, "Unknown or expired run")
    assert written(db, SHORT, player) == [None, None, None]


def test_a_run_shorter_than_the_minimum_and_its_bound_in_time(runs: Stack, db: redis.Redis) -> None:
    player = Player(runs.url)
    run = new_run(player, SLOW)
    refused(post(player, SLOW, 1, run), 422, "shorter than this board's minimum")
    time.sleep(1.2)  # 100 a second: at least 120 allowed now, and less than 10,000
    refused(post(player, SLOW, 10_000, run), 422, "above what the run's time allows")
    assert written(db, SLOW, player) == [None, None, None]
    assert post(player, SLOW, 100, run).status_code == 200


def test_one_run_posted_twice_at_once_wins_once(runs: Stack, db: redis.Redis) -> None:
    """Two connections, one run, released together: the check and the write are one atomic step."""
    player = Player(runs.url)
    for attempt in range(5):
        assert sorted(race(runs, player, new_run(player, VERIFIED), 100 + attempt)) == [200, 409]


def race(runs: Stack, player: Player, run: str, score: int, board: str = VERIFIED) -> list[int]:
    """The statuses of two posts of one run, each on a connection of its own, sent at the same instant."""
    clients = [httpx.Client(base_url=runs.url, cookies=player.http.cookies, timeout=30) for _ in range(2)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send(client: httpx.Client, score: int) -> None:
        body = {"key": board, "score": score, "member": f"Hero-{player.id}", "run": run}
        barrier.wait()
        statuses.append(client.post("/api/leaderboard", json=body).status_code)

    threads = [threading.Thread(target=send, args=(client, score + i)) for i, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return statuses


def test_the_config_shows_the_bounds(runs: Stack) -> None:
    config = httpx.get(f"{runs.url}/api/config").json()["runs"]
    assert config["verified"] == ["Verified", "Short", "Slow"]
    assert config["bounds"]["Slow"] == {"minS": 1, "maxS": 3600, "scorePerS": 100, "scoreBase": 0}
    assert config["bounds"]["Open"] == {"minS": 0, "maxS": 3600, "scorePerS": 0, "scoreBase": 1000}


def test_a_run_needs_a_session(runs: Stack) -> None:
    answer = httpx.post(f"{runs.url}/api/leaderboard/{VERIFIED}/runs")
    refused(answer, 401, "session")


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ("Nowhere:1:2:3:4", "for a map of LEADERBOARD_MAPS"),
        ("Open:1:2:3", "for a map of LEADERBOARD_MAPS"),
        ("Open:x:::", "not a number"),
        ("Open:5:2::", "max_s above min_s"),
        ("Open:::-1:", "must be positive"),
    ],
)
def test_run_bounds_that_are_not_ones_stop_the_start(bounds: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Settings(leaderboard_maps=MAPS, run_bounds=bounds)


def test_run_bounds_override_per_map_and_verified_names_maps() -> None:
    settings = Settings(leaderboard_maps=MAPS, run_bounds="Slow:10::50:", leaderboard_verified="Slow")
    assert settings.runs["Slow"] == RunBounds(10, 3600, 50, 1000)
    assert settings.runs["Open"] == RunBounds(1, 3600, 2000, 1000)
    assert settings.verified("Slow") and not settings.verified("Open")
    with pytest.raises(ValueError, match="LEADERBOARD_VERIFIED"):
        Settings(leaderboard_maps=MAPS, leaderboard_verified="Elsewhere")
