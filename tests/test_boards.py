"""Leaderboards a game developer would pick: ranks and pages, "around me", one entry per player, seasons."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

from devtools.stack import Stack
from services.gateway.store import rows_of
from shared import keys, seasons
from shared.protocol import SCORES, as_number, owner_of
from shared.settings import MAX_EXACT_INTEGER
from shared.worker import APPLY_COMMANDS
from tests.conftest import ARTIFACTS, Player, eventually, fresh_redis, spawn_gateway, started

Db = redis.Redis | RedisCluster
# Boards of this module's own, which no other test writes to.
MAPS = "Ranks,Moves,Legacy,Names,Seasonal"
RANKS = keys.leaderboard("Ranks")
MOVES = keys.leaderboard("Moves")
LEGACY = keys.leaderboard("Legacy")
NAMES = keys.leaderboard("Names")
SEASONAL = keys.leaderboard("Seasonal")


@pytest.fixture(scope="module")
def boards_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this module's own: another stack's workers would take its scores off the stream."""
    with fresh_redis(tmp_path_factory.mktemp("boards")) as url:
        yield url


@pytest.fixture(scope="module")
def boards(boards_url: str) -> Iterator[Stack]:
    with started(boards_url, ARTIFACTS / "logs/boards.log", LEADERBOARD_MAPS=MAPS) as running:
        yield running


@pytest.fixture(scope="module")
def db(boards_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(boards_url, decode_responses=True) as client:
        yield client


@pytest.fixture(scope="module")
def ranked_players(boards: Stack) -> list[Player]:
    """25 players on RANKS with scores 2500, 2400, ... 100: player i holds rank i + 1."""
    players = [Player(boards.url) for _ in range(25)]
    for i, player in enumerate(players):
        assert post(player, RANKS, (25 - i) * 100).status_code == 200
    return players


@pytest.fixture(scope="module")
def second_gateway(boards: Stack) -> str:
    """Another gateway process on the same Redis: a player's reads answer alike from either."""
    return spawn_gateway(boards, "gateway-boards-2")


def post(player: Player, board: str, score: float, name: str = "Hero") -> httpx.Response:
    return player.http.post("/api/leaderboard", json={"key": board, "score": score, "member": f"{name}-{player.id}"})


def board(db: Db, key: str) -> list[tuple[str, float]]:
    return cast(list[tuple[str, float]], db.zrange(key, 0, -1, withscores=True))


def text(value: object) -> str:
    assert isinstance(value, str), value
    return value


def by_player(entries: list[tuple[str, float]]) -> dict[str, float]:
    return {member.partition("-")[2]: score for member, score in entries}


def snapshot(db: redis.Redis) -> dict[str, Any]:
    """Every key but the sessions, rate limits and reply streams a request itself may touch, with its
    content; and but the workers' event counts, which they publish on their own clock (a second
    after the fixture's last score, say)."""
    found: dict[str, Any] = {}
    for key in db.scan_iter(count=1000):
        if key.startswith(("sessions:", "ratelimit:")) or ":reply:" in key or key == keys.EVENT_COUNTS:
            continue
        kind = db.type(key)
        if kind == "zset":
            found[key] = board(db, key)
        elif kind == "hash":
            found[key] = db.hgetall(key)
        elif kind == "stream":
            found[key] = db.xlen(key)
        elif kind == "string":
            found[key] = db.get(key)
    return found


def test_pages_carry_ranks(boards: Stack, ranked_players: list[Player], second_gateway: str) -> None:
    player = ranked_players[0]
    for base in (boards.url, second_gateway):
        top = player.http.get(f"{base}/api/leaderboard/{RANKS}").json()
        assert top == [
            {"value": f"Hero-{p.id}", "score": (25 - i) * 100, "rank": i + 1} for i, p in enumerate(ranked_players[:10])
        ]
        page = player.http.get(f"{base}/api/leaderboard/{RANKS}", params={"count": 5, "offset": 10}).json()
        assert [(entry["rank"], entry["value"]) for entry in page] == [
            (11 + i, f"Hero-{p.id}") for i, p in enumerate(ranked_players[10:15])
        ]
        swapped = player.http.get(f"{base}/api/leaderboard/{RANKS}?offset=10&count=5").json()
        assert swapped == page
        assert player.http.get(f"{base}/api/leaderboard/{RANKS}?offset=24").json() == [
            {"value": f"Hero-{ranked_players[24].id}", "score": 100, "rank": 25}
        ]
        past_the_end = player.http.get(f"{base}/api/leaderboard/{RANKS}?offset=25")
        assert (past_the_end.status_code, past_the_end.json()) == (
            404,
            {"status": 404, "message": "No leaderboard entries found"},
        )
        anonymous = httpx.get(f"{base}/api/leaderboard/{RANKS}?count=3&offset=1").json()
        assert [entry["rank"] for entry in anonymous] == [2, 3, 4]


@pytest.mark.parametrize(
    "query",
    ["count=-1", "count=0", "count=abc", "count=1.5", "count=1000000000000", "offset=-1", "offset=x",
     "offset=1000000000000", "offset=", "count=10&offset=99999999999999999999999"],
)  # fmt: skip
def test_bad_pages_are_json_400s_writing_nothing(
    boards: Stack, db: redis.Redis, ranked_players: list[Player], second_gateway: str, query: str
) -> None:
    before = snapshot(db)
    for base in (boards.url, second_gateway):
        answer = ranked_players[0].http.get(f"{base}/api/leaderboard/{RANKS}?{query}")
        assert answer.status_code == 400, (base, query, answer.text)
        assert answer.json()["status"] == 400 and answer.json()["message"]
    assert snapshot(db) == before


def test_around_me(boards: Stack, ranked_players: list[Player], second_gateway: str) -> None:
    middle = ranked_players[10]  # rank 11
    for base in (boards.url, second_gateway):
        mine = middle.http.get(f"{base}/api/leaderboard/{RANKS}/me", params={"around": 2}).json()
        assert mine == {
            "rank": 11,
            "score": 1500,
            "value": f"Hero-{middle.id}",
            "around": [
                {"value": f"Hero-{p.id}", "score": (25 - i) * 100, "rank": i + 1}
                for i, p in enumerate(ranked_players)
                if 8 <= i <= 12
            ],
        }
        leader = ranked_players[0].http.get(f"{base}/api/leaderboard/{RANKS}/me?around=3").json()
        assert (leader["rank"], [entry["rank"] for entry in leader["around"]]) == (1, [1, 2, 3, 4])
        last = ranked_players[24].http.get(f"{base}/api/leaderboard/{RANKS}/me").json()  # around=5 by default
        assert [entry["rank"] for entry in last["around"]] == [20, 21, 22, 23, 24, 25]
        alone = middle.http.get(f"{base}/api/leaderboard/{RANKS}/me?around=0").json()
        assert alone["around"] == [{"value": f"Hero-{middle.id}", "score": 1500, "rank": 11}]


def test_around_me_without_an_entry_or_a_session(
    boards: Stack, db: redis.Redis, ranked_players: list[Player], second_gateway: str
) -> None:
    newcomer = Player(boards.url)
    before = snapshot(db)
    for base in (boards.url, second_gateway):
        none = newcomer.http.get(f"{base}/api/leaderboard/{RANKS}/me")
        assert (none.status_code, none.json()["status"]) == (404, 404)
        anonymous = httpx.get(f"{base}/api/leaderboard/{RANKS}/me")
        assert (anonymous.status_code, anonymous.json()["status"]) == (401, 401)
        unknown = ranked_players[0].http.get(f"{base}/api/leaderboard/leaderboards:survivor-Nowhere/me")
        assert (unknown.status_code, unknown.json()["status"]) == (400, 400)
    assert snapshot(db) == before


@pytest.mark.parametrize("around", ["-1", "51", "abc", "1e3", "99999999999999999999", ""])
def test_bad_around_is_a_json_400_writing_nothing(
    boards: Stack, db: redis.Redis, ranked_players: list[Player], second_gateway: str, around: str
) -> None:
    before = snapshot(db)
    for base in (boards.url, second_gateway):
        answer = ranked_players[3].http.get(f"{base}/api/leaderboard/{RANKS}/me?around={around}")
        assert (answer.status_code, answer.json()["status"]) == (400, 400), (base, around, answer.text)
    assert snapshot(db) == before


def test_a_new_name_moves_the_one_entry_keeping_the_best(boards: Stack, db: redis.Redis) -> None:
    player, other = Player(boards.url), Player(boards.url)
    assert post(other, MOVES, 150, "Other").status_code == 200
    assert post(player, MOVES, 100, "First").json()["message"] == "Score recorded"
    assert post(player, MOVES, 50, "Second").json()["message"] == "Score recorded"  # renamed: recorded
    assert board(db, MOVES) == [(f"Second-{player.id}", 100), (f"Other-{other.id}", 150)]
    assert post(player, MOVES, 60, "Second").json()["message"] == "Score not higher than the current one; unchanged"
    assert post(player, MOVES, 300, "Third").status_code == 200
    assert board(db, MOVES) == [(f"Other-{other.id}", 150), (f"Third-{player.id}", 300)]
    assert db.hget(keys.board_members(MOVES), player.id) == f"Third-{player.id}"
    mine = player.http.get(f"/api/leaderboard/{MOVES}/me").json()
    assert (mine["rank"], mine["value"], mine["score"]) == (1, f"Third-{player.id}", 300)


def test_names_differing_only_in_case(boards: Stack, db: redis.Redis) -> None:
    """One player's case change is a rename like any other; two players may be `Hero` and `hero` (as
    two may both be `Hero`): a name is a label, the id is who you are."""
    one, two = Player(boards.url), Player(boards.url)
    assert post(one, NAMES, 10, "Hero").status_code == 200
    assert post(one, NAMES, 5, "HERO").status_code == 200
    assert board(db, NAMES) == [(f"HERO-{one.id}", 10)]
    assert post(two, NAMES, 20, "hero").status_code == 200
    assert board(db, NAMES) == [(f"HERO-{one.id}", 10), (f"hero-{two.id}", 20)]


# Cyrillic e, Greek capital eta, a zero-width space, a fullwidth H, an accented e.
LOOK_ALIKES = ["H\u0435ro", "\u0397ero", "Hero\u200b", "\uff28ero", "H\u00e9ro"]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_refused_writing_nothing(boards: Stack, db: redis.Redis, name: str) -> None:
    player = Player(boards.url)
    assert post(player, NAMES, 10, "Hero").status_code == 200
    before = snapshot(db)
    answer = post(player, NAMES, 99, name)
    assert (answer.status_code, answer.json()["status"]) == (400, 400)
    assert "letters, digits or underscores" in answer.json()["message"]
    assert snapshot(db) == before


def test_entries_from_before_the_member_index_leave_no_ghost(boards: Stack, db: redis.Redis) -> None:
    """A board written before one entry per player: a worker starting indexes it once, merging a
    player's entries into one (its best score), so a later rename leaves no ghost."""
    player, twice = Player(boards.url), Player(boards.url)
    db.delete(keys.board_indexed(LEGACY), keys.board_members(LEGACY))
    db.zadd(LEGACY, {f"Old-{player.id}": 70, f"Ada-{twice.id}": 40, f"Bea-{twice.id}": 90})
    boards.spawn("leaderboard", name="leaderboard-indexer")
    eventually(lambda: db.exists(keys.board_indexed(LEGACY)) == 1, 30, "the new worker indexed the board")
    assert db.zcard(LEGACY) == 2
    kept = text(db.hget(keys.board_members(LEGACY), twice.id))
    assert db.zscore(LEGACY, kept) == 90
    assert post(player, LEGACY, 10, "New").status_code == 200
    assert post(twice, LEGACY, 10, "Cid").status_code == 200
    assert board(db, LEGACY) == [(f"New-{player.id}", 70), (f"Cid-{twice.id}", 90)]


def test_no_seasons_by_default(boards: Stack, ranked_players: list[Player]) -> None:
    player = ranked_players[0]
    for path in (f"/api/leaderboard/{RANKS}/seasons", f"/api/leaderboard/{RANKS}?season=2026-12"):
        answer = player.http.get(path)
        assert (answer.status_code, answer.json()["status"]) == (404, 404)
    assert player.http.get("/api/config").json()["season"] == {"mode": "none", "current": None, "endsAt": None}


# Seasons, on a fast clock: a season every 2 seconds.

# Players here post as fast as the gateway answers, for seconds: far past a player's write limit.
UNLIMITED = {"RATE_LIMIT_SESSION_WRITES": ""}
PERIOD = "every:2s"


@pytest.fixture(scope="module")
def seasonal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two leaderboard workers (they race to roll the board over) and seasons of 2 seconds."""
    env = {"LEADERBOARD_MAPS": MAPS, "LEADERBOARD_SEASON": PERIOD, "LEADERBOARD_SEASONS_KEPT": "30", **UNLIMITED}
    with (
        fresh_redis(tmp_path_factory.mktemp("seasonal")) as url,
        started(url, ARTIFACTS / "logs/boards-seasonal.log", 1, 2, **env) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def sdb(seasonal: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(seasonal.redis_url, decode_responses=True) as client:
        yield client


def redis_ms(db: Db) -> int:
    seconds, micros = db.time()
    return seconds * 1000 + micros // 1000


def post_across_boundaries(db: Db, key: str, players: list[Player], partitions: int = 1) -> dict[str, dict[str, float]]:
    """The players post rising scores (renaming now and then) until three boundaries have passed.
    Each score's season is its stream entry's time, Redis's clock when it was admitted: the answer
    is, by season label, each player's best score admitted in it, read from the streams."""
    starts = {}
    for partition in range(partitions):
        newest = cast(list[tuple[str, Any]], db.xrevrange(SCORES.key(partition), count=1))
        starts[partition] = newest[0][0] if newest else "0-0"
    stop_at = seasons.season_at(PERIOD, redis_ms(db)).end_ms + 4500

    def play(player: Player) -> None:
        score = 0
        while redis_ms(db) < stop_at:
            score += 1
            name = "Even" if score % 7 else "Renamed"  # a rename now and then, across boundaries too
            assert post(player, key, score, name).status_code == 200

    threads = [threading.Thread(target=play, args=(player,)) for player in players]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected: dict[str, dict[str, float]] = {}
    for partition, start in starts.items():
        admitted = cast(list[tuple[str, dict[str, str]]], db.xrange(SCORES.key(partition), min=f"({start}"))
        for entry_id, fields in admitted:
            payload = json.loads(fields["payload"])
            if payload["key"] == key:
                best = expected.setdefault(seasons.season_at(PERIOD, int(entry_id.split("-")[0])).label, {})
                best[fields["session"]] = max(best.get(fields["session"], 0), payload["score"])
    assert len(expected) >= 3, f"the posts crossed boundaries: {sorted(expected)}"
    return expected


def assert_each_in_its_season(db: Db, key: str, players: list[Player], expected: dict[str, dict[str, float]]) -> None:
    """Each season's archive holds exactly each player's best admitted in it, one entry each;
    all-time, each one's best; the current board, rolled over once per boundary, its season's."""
    for label, best in expected.items():
        archive = board(db, keys.season_board(key, label))
        assert by_player(archive) == best, label
        assert len(archive) == len(best), f"one entry per player in {label}"
    overall = {player.id: max(best.get(player.id, 0) for best in expected.values()) for player in players}
    assert by_player(board(db, keys.all_time_board(key))) == overall
    newest = max(expected, key=int)
    assert db.get(keys.season_marker(key)) == str(int(newest) * 1000)
    assert board(db, key) == board(db, keys.season_board(key, newest))


def test_scores_land_in_the_season_of_their_admission(seasonal: Stack, sdb: redis.Redis) -> None:
    players = [Player(seasonal.url) for _ in range(6)]
    expected = post_across_boundaries(sdb, SEASONAL, players)
    assert_each_in_its_season(sdb, SEASONAL, players, expected)
    listed = players[0].http.get(f"/api/leaderboard/{SEASONAL}/seasons").json()
    assert listed["seasons"][: len(expected)] == sorted(expected, key=int, reverse=True)
    past = sorted(expected, key=int)[1]
    page = players[0].http.get(f"/api/leaderboard/{SEASONAL}", params={"season": past, "count": 100}).json()
    assert {entry["value"].partition("-")[2]: entry["score"] for entry in page} == expected[past]
    assert [entry["rank"] for entry in page] == list(range(1, len(page) + 1))


def test_a_new_season_starts_empty_and_config_says_when_it_ends(seasonal: Stack, sdb: redis.Redis) -> None:
    player = Player(seasonal.url)
    config = player.http.get("/api/config").json()["season"]
    assert config["mode"] == PERIOD
    assert config["endsAt"] == (int(config["current"]) + 2) * 1000
    assert post(player, SEASONAL, 5).status_code == 200
    held_ms = text(sdb.get(keys.season_marker(SEASONAL)))
    eventually(lambda: seasons.season_at(PERIOD, redis_ms(sdb)).start_ms > int(held_ms), 5, "a boundary passes")
    # No score of the new season yet: the board still holds the last one, and answers as empty.
    assert sdb.zcard(SEASONAL) >= 1
    assert player.http.get(f"/api/leaderboard/{SEASONAL}").status_code == 404
    assert player.http.get(f"/api/leaderboard/{SEASONAL}/me").status_code == 404
    past = player.http.get(f"/api/leaderboard/{SEASONAL}", params={"season": str(int(held_ms) // 1000)})
    assert f"Hero-{player.id}" in [entry["value"] for entry in past.json()]


@pytest.mark.parametrize(
    ("season", "status"),
    [("abc", 400), ("2026-12", 400), ("-1", 400), ("1" * 13, 400), ("1", 400), ("1000000000", 404)],
)
def test_bad_or_unknown_season_labels(seasonal: Stack, sdb: redis.Redis, season: str, status: int) -> None:
    player = Player(seasonal.url)
    before = snapshot(sdb)
    answer = player.http.get(f"/api/leaderboard/{SEASONAL}", params={"season": season})
    assert (answer.status_code, answer.json()["status"]) == (status, status), answer.text
    assert snapshot(sdb) == before


def test_turning_seasons_on_carries_the_scores_from_before_into_all_time(seasonal: Stack, sdb: redis.Redis) -> None:
    """A board written without seasons (no season marker): a worker starting carries its scores into
    all-time, one entry per player, which a roll-over would otherwise leave without them."""
    player, other = Player(seasonal.url), Player(seasonal.url)
    sdb.zadd(MOVES, {f"Old-{player.id}": 700, f"Other-{other.id}": 50})
    assert sdb.exists(keys.season_marker(MOVES)) == 0
    seasonal.spawn("leaderboard", name="leaderboard-carrier")
    all_time = keys.all_time_board(MOVES)
    eventually(lambda: sdb.zcard(all_time) == 2, 30, "the new worker carried the board into all-time")
    assert board(sdb, all_time) == [(f"Other-{other.id}", 50), (f"Old-{player.id}", 700)]
    assert post(player, MOVES, 10, "New").status_code == 200
    assert board(sdb, all_time) == [(f"Other-{other.id}", 50), (f"New-{player.id}", 700)]


@given(st.lists(st.floats(-MAX_EXACT_INTEGER, MAX_EXACT_INTEGER) | st.integers(-(2**53), 2**53), min_size=1))
@hypothesis_settings(max_examples=50, deadline=None)
def test_scores_as_redis_writes_them_read_as_the_numbers_they_are(boards_url: str, scores: list[float]) -> None:
    # rows_of reads whole scores with int(): the same numbers float() and as_number would give.
    with redis.Redis.from_url(boards_url, protocol=2) as client:  # RESP2, as the gateway's client reads
        client.delete("scores-read")
        client.zadd("scores-read", {f"m{index}": score for index, score in enumerate(scores)})
        connection = client.connection_pool.get_connection()
        try:  # the reply as Redis wrote it, before redis-py's own parsing of scores
            connection.send_command("ZRANGE", "scores-read", 0, -1, "WITHSCORES")
            flat = connection.read_response()
        finally:
            client.connection_pool.release(connection)
    expected = [as_number(float(written)) for written in flat[1::2]]
    read = [score for _, score in rows_of(flat)]
    assert read == expected and [type(score) for score in read] == [type(score) for score in expected]


@given(st.text(alphabet="ab-_1é{}", max_size=12))
@hypothesis_settings(max_examples=80, deadline=None)
def test_the_member_rule_is_the_same_in_python_and_lua(boards_url: str, member: str) -> None:
    """A member's owner, `{name}-{id}`: protocol.owner_of and apply_commands.lua's owner_of agree."""
    script = APPLY_COMMANDS + "return owner_of(ARGV[1]) or ''"
    with redis.Redis.from_url(boards_url) as client:
        in_lua = client.eval(script, 0, member)
    assert in_lua.decode() == owner_of(member)[1]
