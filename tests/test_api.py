"""The HTTP contract of API.md, driven the way the seed's game client drives it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis

from devtools.stack import Stack
from services.gateway.models import NAME_PATTERN
from tests.conftest import TEST_MAPS, Player, StackFactory

GRASSLAND = "leaderboards:survivor-Grassland"


@pytest.fixture
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, protocol=3)


def test_session_is_created_once_and_kept(stack: Stack, db: redis.Redis) -> None:
    with httpx.Client(base_url=stack.url) as browser:
        first = browser.get("/session")
        again = browser.get("/session")
    session_id = first.json()["id"]
    assert again.json()["id"] == session_id
    assert len(session_id) == 32 and int(session_id, 16) >= 0  # 128 random bits, URL-safe
    cookie = first.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Max-Age=604800", "Path=/"):
        assert attribute in cookie
    # The key outlives the cookie by at most SESSION_REFRESH_S (60 s), never by more.
    assert 604_800 < db.ttl(f"sessions:{session_id}") <= 604_860


def test_a_forged_cookie_gets_a_new_session(stack: Stack) -> None:
    victim = Player(stack.url)
    with httpx.Client(base_url=stack.url, cookies={"cq_session": f"{victim.id}.forged"}) as attacker:
        assert attacker.get(f"/api/playerstate/{victim.id}").status_code == 401
        assert attacker.get("/session").json()["id"] != victim.id


@pytest.mark.parametrize(("kind", "noun"), [("playerstate", "Player"), ("gamestate", "Game")])
def test_seed_save_flow(player: Player, db: redis.Redis, kind: str, noun: str) -> None:
    key = f"{'players' if kind == 'playerstate' else 'games'}:{player.id}"
    assert player.http.get(f"/api/{kind}/{player.id}").json() == {"status": 404, "message": "Not Found"}
    missing = player.save(kind, {"name": "Hero"}, "PATCH")
    assert (missing.status_code, missing.json()) == (404, {"status": 404, "message": "Not Found"})
    assert not db.exists(key)
    created = player.save(kind, {"name": "Hero", "map": "Grassland"}, "POST")
    assert created.json() == {"status": 200, "message": f"{noun} created"}
    document = {"name": "Hero", "map": "Mountains", "pos": {"x": 12.5, "y": -3}, "skills": ["swordBeam"]}
    updated = player.save(kind, document, "PATCH")
    assert updated.json() == {"status": 200, "message": f"{noun} updated"}
    stored = player.http.get(f"/api/{kind}/{player.id}")
    assert stored.status_code == 200 and stored.json() == {"id": player.id, **document}
    assert db.json().get(key) == {"id": player.id, **document}


def test_search_by_name_and_id(stack: Stack, player: Player) -> None:
    player.save_with_fallback("playerstate", {"name": "Zeldah71", "gold": 99})
    other = Player(stack.url)
    other.save_with_fallback("playerstate", {"name": "Zeldah71", "gold": 5, "secret": "mine"})
    found = player.http.get("/api/playerstate/search", params={"name": "Zeldah71"}).json()
    assert found["total"] == 2
    by_key = {hit["id"]: hit["value"] for hit in found["documents"]}
    assert by_key[f"players:{player.id}"] == {"id": player.id, "name": "Zeldah71", "gold": 99}
    assert by_key[f"players:{other.id}"] == {"id": other.id, "name": "Zeldah71"}  # no private fields
    by_id = player.http.get("/api/playerstate/search", params={"id": player.id}).json()
    assert [hit["id"] for hit in by_id["documents"]] == [f"players:{player.id}"]
    player.save_with_fallback("gamestate", {"chapter": 2})
    games = player.http.get("/api/gamestate/search", params={"id": player.id}).json()
    assert games["documents"] == [{"id": f"games:{player.id}", "value": {"id": player.id, "chapter": 2}}]


def test_scores_keep_the_personal_best(stack: Stack, player: Player, db: redis.Redis) -> None:
    board = "leaderboards:survivor-Scores"
    member = f"Hero-{player.id}"
    rival = Player(stack.url)
    for who, score in ((player, 1200), (rival, 800), (player, 1500), (player, 300)):
        answer = who.http.post("/api/leaderboard", json={"key": board, "score": score, "member": f"Hero-{who.id}"})
        assert answer.status_code == 200 and answer.json()["status"] == 200
    assert db.zscore(board, member) == 1500
    top = player.http.get(f"/api/leaderboard/{board}", params={"count": 10}).json()
    assert top == [{"value": member, "score": 1500, "rank": 1}, {"value": f"Hero-{rival.id}", "score": 800, "rank": 2}]
    assert player.http.get(f"/api/leaderboard/{board}", params={"count": 1}).json() == top[:1]


def test_empty_board_is_404(player: Player) -> None:
    answer = player.http.get("/api/leaderboard/leaderboards:survivor-Empty")
    assert (answer.status_code, answer.json()) == (404, {"status": 404, "message": "No leaderboard entries found"})


def test_healthz_reports_every_part(stack: Stack) -> None:
    health = httpx.get(f"{stack.url}/healthz").json()
    assert health["status"] == 200
    assert health["checks"] == {"redis": "ok", "modules": "ok", "saves_consumers": 1, "leaderboard_consumers": 1}


def test_openapi_docs_are_served(stack: Stack) -> None:
    schema = httpx.get(f"{stack.url}/openapi.json").json()
    assert {"/session", "/api/playerstate", "/api/leaderboard", "/healthz"} <= set(schema["paths"])
    assert httpx.get(f"{stack.url}/docs").status_code == 200


def test_a_session_is_confirmed_in_redis_once_a_refresh_interval(make_stack: StackFactory) -> None:
    # Cookies are stamped in whole seconds: 3 s leaves a slow machine 2 s between the stamp and the first check.
    stack = make_stack(saves=0, leaderboard=0, SESSION_REFRESH_S="3")
    player = Player(stack.url)
    db = redis.Redis.from_url(stack.redis_url, protocol=3)
    db.expire(f"sessions:{player.id}", 5)  # the key's TTL tells whether a request re-set it
    assert player.http.get("/session").json()["id"] == player.id
    assert db.ttl(f"sessions:{player.id}") <= 5  # within the interval: trusted, not re-set
    time.sleep(3.1)
    assert player.http.get("/session").json()["id"] == player.id
    assert db.ttl(f"sessions:{player.id}") > 604_000  # past it: confirmed and re-set
    db.delete(f"sessions:{player.id}")
    time.sleep(3.1)
    assert player.http.get("/session").json()["id"] != player.id  # gone from Redis: a new session


def test_several_gateway_processes_share_sessions(make_stack: StackFactory) -> None:
    stack = make_stack(GATEWAY_PROCESSES="2")
    gateway = stack.processes["gateway-1"]
    children = Path(f"/proc/{gateway.pid}/task/{gateway.pid}/children").read_text().split()
    assert len(children) >= 2  # uvicorn's supervisor and its two serving processes
    players = [Player(stack.url) for _ in range(6)]  # new connections land on either process
    for player in players:
        assert player.save_with_fallback("playerstate", {"name": "Hero"}).status_code == 200
        assert player.http.get(f"/api/playerstate/{player.id}").json()["name"] == "Hero"


def test_the_game_config_is_the_servers_rules(stack: Stack) -> None:
    config = httpx.get(f"{stack.url}/api/config").json()
    assert config["maps"] == TEST_MAPS.split(",")
    assert config["leaderboards"]["Grassland"] == "leaderboards:survivor-Grassland"
    assert config["name"]["pattern"] == NAME_PATTERN and config["name"]["maxLength"] == 32
    player = Player(stack.url)
    longest = "N" * config["name"]["maxLength"]
    for name, status in [(longest, 200), (longest + "N", 400), ("Sir_Cache", 200)]:
        body = {"key": config["leaderboards"]["Grassland"], "score": 1, "member": f"{name}-{player.id}"}
        assert player.http.post("/api/leaderboard", json=body).status_code == status, name
