"""The player's own data (API.md, v3): GET /api/account exports it, DELETE /api/account erases it, on
every board and season, with the recovery code and the session; an erase racing the id's own writes
leaves nothing of the id once it has answered."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import cast

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from devtools.stack import Stack
from shared import keys, seasons
from tests.conftest import Player, own_stack

MAPS = "Hills,Caves"
HILLS, CAVES = keys.leaderboard("Hills"), keys.leaderboard("Caves")
Db = redis.Redis | RedisCluster


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"LEADERBOARD_MAPS": MAPS, "LEADERBOARD_SEASON": "weekly"}
    with own_stack(tmp_path_factory, "account", **env) as running:
        yield running


@pytest.fixture(scope="module")
def db(accounts: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(accounts.redis_url, decode_responses=True) as client:
        yield client


def score(player: Player, board: str, value: float, name: str = "Hero") -> httpx.Response:
    return player.http.post("/api/leaderboard", json={"key": board, "score": value, "member": f"{name}-{player.id}"})


def played(player: Player) -> str:
    """A player with both saves, entries on both boards and a recovery code: the code."""
    assert player.save("playerstate", {"name": "Eraser", "level": 3}, "POST").status_code == 200
    assert player.save("gamestate", {"chapter": 2}, "POST").status_code == 200
    assert score(player, HILLS, 120).status_code == 200
    assert score(player, CAVES, 80).status_code == 200
    code: str = player.http.post("/session/recovery").json()["code"]
    return code


def remains(db: Db, player_id: str) -> list[str]:
    """What Redis still holds of the id, but the erase's own tombstones (which expire, and hold no data)."""
    label = seasons.season_at("weekly", int(time.time() * 1000)).label
    found = [key for key in (keys.player(player_id), keys.game(player_id), keys.session(player_id)) if db.exists(key)]
    found += [key for key in (keys.recovery_player(player_id),) if db.exists(key)]
    for board in (HILLS, CAVES):
        for key in (board, keys.season_board(board, label), keys.all_time_board(board)):
            members = cast(list[str], db.zrange(key, 0, -1))
            found += [f"{key} {member}" for member in members if member.endswith(player_id)]
            member = cast(str | None, db.hget(keys.board_members(key), player_id))
            if member not in (None, "!"):
                found.append(f"{keys.board_members(key)} {member}")
    return found


def test_no_session_no_account(accounts: Stack) -> None:
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, f"{accounts.url}/api/account")
        assert answer.status_code == 401 and answer.json()["status"] == 401


def test_the_export_holds_saves_every_board_and_season_and_the_recovery_state(accounts: Stack, db: redis.Redis) -> None:
    player = Player(accounts.url)
    fresh = player.http.get("/api/account").json()
    assert fresh == {
        "id": player.id,
        "saves": {"player": None, "game": None},
        "leaderboards": [],
        "recovery": {"active": False},
    }
    played(player)
    exported = player.http.get("/api/account").json()
    assert exported["saves"]["player"] == {"id": player.id, "name": "Eraser", "level": 3}
    assert exported["saves"]["game"] == {"id": player.id, "chapter": 2}
    assert exported["recovery"] == {"active": True}
    label = seasons.season_at("weekly", int(time.time() * 1000)).label
    rows = {(entry["key"], entry["season"]): entry for entry in exported["leaderboards"]}
    assert set(rows) == {(HILLS, label), (keys.all_time_board(HILLS), None), (CAVES, label),
                         (keys.all_time_board(CAVES), None)}  # fmt: skip
    hills = rows[(HILLS, label)]
    assert hills["value"] == f"Hero-{player.id}" and hills["score"] == 120
    assert hills["rank"] == cast(int, db.zrevrank(HILLS, hills["value"])) + 1


def test_the_erase_leaves_nothing_and_the_old_cookie_writes_nothing(accounts: Stack, db: redis.Redis) -> None:
    player = Player(accounts.url)
    code = played(player)
    old_cookie = dict(player.http.cookies)
    answer = player.http.delete("/api/account")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": 200, "message": "Account deleted"}
    assert "Max-Age=0" in answer.headers["set-cookie"]
    assert remains(db, player.id) == []
    assert not [key for key in db.scan_iter(match="recovery:code:*") if db.get(key) == player.id]

    old = httpx.Client(base_url=accounts.url, cookies=old_cookie, timeout=30)
    assert old.post("/api/playerstate", json={"playerData": {"id": player.id}}).status_code == 401
    assert old.post("/api/leaderboard", json={"key": HILLS, "score": 1, "member": f"A-{player.id}"}).status_code == 401
    assert old.get(f"/api/playerstate/{player.id}").status_code in (401, 404)
    assert old.delete("/api/account").status_code in (200, 401)  # harmless: nothing left, nothing written
    assert remains(db, player.id) == []
    recovered = httpx.post(f"{accounts.url}/session/recover", json={"code": code})
    assert recovered.status_code == 403 and recovered.json()["status"] == 403
    rank = httpx.get(f"{accounts.url}/api/leaderboard/{HILLS}").json()
    assert all(not entry["value"].endswith(player.id) for entry in rank)


def test_an_erase_racing_the_ids_own_saves_and_scores_leaves_nothing(accounts: Stack, db: redis.Redis) -> None:
    """Writes of the id in flight on other connections while it is erased: once the erase has
    answered, nothing of the id is left, and what is still in flight brings nothing back."""
    for attempt in range(3):
        player = Player(accounts.url)
        played(player)
        statuses = erase_while_writing(accounts, db, player, 0.2 + 0.1 * attempt)
        assert remains(db, player.id) == [], statuses
        assert 401 in statuses  # the old cookie, once its session was erased


def erase_while_writing(stack: Stack, db: Db, player: Player, after_s: float) -> list[int]:
    """Four connections of the player's save and score as fast as they can; `after_s` in, the player
    erases the account, which must have left nothing when it answers; then the writers stop."""
    stop = threading.Event()
    statuses: list[int] = []

    def write(kind: int) -> None:
        with httpx.Client(base_url=stack.url, cookies=dict(player.http.cookies), timeout=30) as client:
            level = 0
            while not stop.is_set():
                level += 1
                if kind == 0:
                    answer = client.post("/api/playerstate", json={"playerData": {"id": player.id, "level": level}})
                else:
                    body = {"key": HILLS, "score": 200 + level, "member": f"Racer-{player.id}"}
                    answer = client.post("/api/leaderboard", json=body)
                statuses.append(answer.status_code)

    writers = [threading.Thread(target=write, args=(kind,)) for kind in (0, 1, 0, 1)]
    for writer in writers:
        writer.start()
    time.sleep(after_s)
    erased = player.http.delete("/api/account")
    assert erased.status_code == 200, erased.text
    assert remains(db, player.id) == []
    time.sleep(0.3)
    stop.set()
    for writer in writers:
        writer.join()
    return statuses
