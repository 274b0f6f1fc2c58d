"""Ties (API.md, v3): of two entries with one score, the one that reached it first ranks higher, in
pages, /me, around, the live top, archived seasons and all-time; the sorted sets keep the real
scores, and a bare ZADD ranks after the timed entries of its score."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import orjson
import pytest
import redis

from devtools.stack import Stack
from shared import keys, seasons
from tests.conftest import Player, own_stack

MAPS = "Even,Paged,Named,Seasoned,Mended"
EVEN, PAGED, NAMED, SEASONED, MENDED = (keys.leaderboard(name) for name in MAPS.split(","))


@pytest.fixture(scope="module")
def ties(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, "ties", LEADERBOARD_MAPS=MAPS) as running:
        yield running


@pytest.fixture(scope="module")
def db(ties: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(ties.redis_url, decode_responses=True) as client:
        yield client


def post(player: Player, board: str, score: float, name: str) -> None:
    answer = player.http.post("/api/leaderboard", json={"key": board, "score": score, "member": f"{name}-{player.id}"})
    assert answer.status_code == 200, answer.text
    time.sleep(0.005)  # the next score's stream entry is a later millisecond


def page(stack: Stack, board: str, **params: Any) -> list[tuple[str, float, int]]:
    answer = httpx.get(f"{stack.url}/api/leaderboard/{board}", params=params)
    assert answer.status_code == 200, answer.text
    return [(entry["value"].partition("-")[0], entry["score"], entry["rank"]) for entry in answer.json()]


def test_the_first_to_reach_a_score_ranks_higher_everywhere(ties: Stack, db: redis.Redis) -> None:
    abe, zed, mid = Player(ties.url), Player(ties.url), Player(ties.url)
    post(abe, EVEN, 500, "Abe")  # first at 500; under Redis's own order "Zed" would rank above
    post(zed, EVEN, 500, "Zed")
    post(mid, EVEN, 400, "Mid")
    post(mid, EVEN, 500, "Mid")  # reaches 500 last
    assert page(ties, EVEN) == [("Abe", 500, 1), ("Zed", 500, 2), ("Mid", 500, 3)]
    assert cast(list[Any], db.zrange(EVEN, 0, -1, withscores=True)) == [
        (f"Abe-{abe.id}", 500),
        (f"Mid-{mid.id}", 500),
        (f"Zed-{zed.id}", 500),
    ]  # the real scores, in Redis's own order
    mine = zed.http.get(f"/api/leaderboard/{EVEN}/me", params={"around": 1}).json()
    assert mine["rank"] == 2
    assert [(entry["value"].partition("-")[0], entry["rank"]) for entry in mine["around"]] == [
        ("Abe", 1),
        ("Zed", 2),
        ("Mid", 3),
    ]
    assert abe.http.get(f"/api/leaderboard/{EVEN}/me").json()["rank"] == 1
    assert mid.http.get(f"/api/leaderboard/{EVEN}/me").json()["rank"] == 3
    last = cast(list[Any], db.xrevrange(keys.live_top(EVEN), count=1))[0][1]["top"]
    assert orjson.loads(last)[::2] == [f"Abe-{abe.id}", f"Zed-{zed.id}", f"Mid-{mid.id}"]
    exported = {entry["key"]: entry["rank"] for entry in zed.http.get("/api/account").json()["leaderboards"]}
    assert exported == {EVEN: 2}


def test_a_bare_zadd_ranks_after_the_timed_entries_of_its_score(ties: Stack, db: redis.Redis) -> None:
    first, second = Player(ties.url), Player(ties.url)
    db.zadd(NAMED, {"Aaa-byhand": 300, "Zzz-byhand": 300})
    post(first, NAMED, 300, "Bob")
    post(second, NAMED, 300, "Al")
    post(second, NAMED, 200, "Al")  # lower: no change, its time stays
    assert page(ties, NAMED) == [("Bob", 300, 1), ("Al", 300, 2), ("Zzz", 300, 3), ("Aaa", 300, 4)]


def test_pages_that_cut_through_a_tie_are_in_its_order(ties: Stack, db: redis.Redis) -> None:
    players = [Player(ties.url) for _ in range(6)]
    names = ["Fa", "Ea", "Da", "Ca", "Ba", "Aa"]  # reached in this order: Redis's order is the reverse
    post(players[0], PAGED, 900, "Top")
    for player, name in zip(players[1:], names, strict=False):
        post(player, PAGED, 100, name)
    whole = page(ties, PAGED)
    assert [name for name, _, _ in whole] == ["Top", "Fa", "Ea", "Da", "Ca", "Ba"]
    for offset in range(0, 6):
        for count in (1, 2, 4):
            assert page(ties, PAGED, offset=offset, count=count) == whole[offset : offset + count]
    renamed = players[2]  # "Ea", second at 100: a new name and an equal score keep its place
    post(renamed, PAGED, 100, "Renamed")
    assert [name for name, _, _ in page(ties, PAGED)][:3] == ["Top", "Fa", "Renamed"]
    post(players[5], PAGED, 900, "Ba")  # raised to the top's score, later than the top
    assert [name for name, _, _ in page(ties, PAGED, count=2)] == ["Top", "Ba"]


def test_a_page_remembered_as_tied_follows_the_board_as_its_ties_come_and_go(ties: Stack) -> None:
    """A gateway reads a page it last saw tied through the ordering script at once (Store.tied_pages):
    each page below is read twice, the second time from that memory, and must follow the board."""
    abe, zed, mid = Player(ties.url), Player(ties.url), Player(ties.url)
    post(abe, MENDED, 300, "Abe")  # first at 300; Redis's own order puts "Zed" above
    post(zed, MENDED, 300, "Zed")
    for _ in range(2):
        assert page(ties, MENDED) == [("Abe", 300, 1), ("Zed", 300, 2)]
    post(zed, MENDED, 301, "Zed")  # the tie ends
    for _ in range(2):
        assert page(ties, MENDED) == [("Zed", 301, 1), ("Abe", 300, 2)]
    post(mid, MENDED, 300, "Mid")  # a new one, behind Abe
    for _ in range(2):
        assert page(ties, MENDED) == [("Zed", 301, 1), ("Abe", 300, 2), ("Mid", 300, 3)]


def test_archived_seasons_and_all_time_order_ties_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    with (
        own_stack(tmp_path_factory, "ties_seasons", LEADERBOARD_MAPS=MAPS, LEADERBOARD_SEASON="weekly") as stack,
        redis.Redis.from_url(stack.redis_url, decode_responses=True) as db,
    ):
        early, late = Player(stack.url), Player(stack.url)
        post(early, SEASONED, 50, "Yu")
        post(late, SEASONED, 50, "Zoe")
        label = seasons.season_at("weekly", int(time.time() * 1000)).label
        assert page(stack, SEASONED, season=label) == [("Yu", 50, 1), ("Zoe", 50, 2)]
        ranks = {entry["key"]: entry["rank"] for entry in late.http.get("/api/account").json()["leaderboards"]}
        assert ranks == {SEASONED: 2, keys.all_time_board(SEASONED): 2}
        assert db.hget(keys.board_reached(keys.all_time_board(SEASONED)), f"Yu-{early.id}") is not None
