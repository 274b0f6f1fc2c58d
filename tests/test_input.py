"""Broken and hostile requests: each gets a JSON error with the right code, and nothing is written."""

from __future__ import annotations

import httpx
import pytest
import redis

from devtools.stack import Stack
from tests.conftest import Player

BOARD = "leaderboards:survivor-Grassland"


@pytest.fixture
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, protocol=3)


def assert_error(answer: httpx.Response, status: int, contains: str = "") -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == status and contains in body["message"]


@pytest.mark.parametrize(
    ("body", "contains"),
    [
        (b"{not json", "Malformed JSON"),
        (b"[]", ""),
        (b'{"playerData": "x"}', "playerData"),
        (b'{"playerData": {"name": "no id"}}', "playerData.id"),
        (b'{"playerData": {"id": 42}}', "playerData.id"),
        (b'{"wrong": {}}', "playerData"),
        (b"", ""),
    ],
)
def test_malformed_bodies_are_400(player: Player, db: redis.Redis, body: bytes, contains: str) -> None:
    answer = player.http.post("/api/playerstate", content=body, headers={"content-type": "application/json"})
    assert_error(answer, 400, contains)
    assert not db.exists(f"players:{player.id}")


def test_oversized_body_is_413_before_parsing(player: Player, db: redis.Redis) -> None:
    huge = {"playerData": {"id": player.id, "blob": "x" * 70_000}}
    assert_error(player.http.post("/api/playerstate", json=huge), 413, "limit")
    chunks = (b'{"playerData": {"id": "' + player.id.encode() + b'", "a": "' + b"y" * 70_000 + b'"}}',)
    streamed = player.http.post("/api/playerstate", content=iter(chunks), headers={"content-type": "application/json"})
    assert_error(streamed, 413, "limit")  # no Content-Length: counted as it arrives
    assert not db.exists(f"players:{player.id}")


def test_deep_json_is_refused(player: Player, db: redis.Redis) -> None:
    deep = player.id
    nested = '{"a":' * 40 + "1" + "}" * 40
    answer = player.http.post(
        "/api/playerstate",
        content=f'{{"playerData": {{"id": "{deep}", "deep": {nested}}}}}',
        headers={"content-type": "application/json"},
    )
    assert_error(answer, 400, "deeper")
    very_deep = "[" * 5000 + "]" * 5000
    answer = player.http.post(
        "/api/playerstate",
        content=f'{{"playerData": {{"id": "{deep}", "deep": {very_deep}}}}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400 and answer.json()["status"] == 400
    assert not db.exists(f"players:{player.id}")


@pytest.mark.parametrize("kind", ["playerstate", "gamestate"])
def test_another_sessions_documents_are_403(stack: Stack, db: redis.Redis, kind: str) -> None:
    owner, intruder = Player(stack.url), Player(stack.url)
    owner.save_with_fallback(kind, {"name": "Owner"})
    field = "playerData" if kind == "playerstate" else "gameData"
    for method in ("POST", "PATCH"):
        answer = intruder.http.request(method, f"/api/{kind}", json={field: {"id": owner.id, "name": "Pwned"}})
        assert_error(answer, 403)
    assert_error(intruder.http.get(f"/api/{kind}/{owner.id}"), 403)
    key = f"{'players' if kind == 'playerstate' else 'games'}:{owner.id}"
    assert db.json().get(key) == {"id": owner.id, "name": "Owner"}


def test_no_session_is_401_and_nothing_is_listed(stack: Stack) -> None:
    anonymous = httpx.Client(base_url=stack.url)
    assert_error(anonymous.get("/api/playerstate/search", params={"name": "Hero"}), 401)
    assert_error(anonymous.post("/api/playerstate", json={"playerData": {"id": "a" * 32}}), 401)
    assert_error(anonymous.post("/api/leaderboard", json={"key": BOARD, "score": 1, "member": "a-b"}), 401)


@pytest.mark.parametrize("query", [{}, {"name": "*"}, {"name": ")|(@id:*"}, {"name": "-foo"}, {"id": "a b"}])
def test_search_cannot_be_widened(player: Player, query: dict[str, str]) -> None:
    assert_error(player.http.get("/api/playerstate/search", params=query), 400)


@pytest.mark.parametrize(
    ("key", "score", "member", "status"),
    [
        ("sessions:abc", "1", None, 400),
        ("leaderboards:survivor-Nowhere", "1", None, 400),
        (BOARD, "NaN", None, 400),
        (BOARD, "1e999", None, 400),
        (BOARD, "-5", None, 400),
        (BOARD, "2e9", None, 400),
        (BOARD, '"high"', None, 400),
        (BOARD, "10", "Hero-0123456789abcdef0123456789abcdef", 403),
        (BOARD, "10", "Hero", 403),
        (BOARD, "10", "Bad name!-{id}", 400),
        (BOARD, "10", "Hero\n-{id}", 400),
    ],
)
def test_bad_scores_write_nothing(
    player: Player, db: redis.Redis, key: str, score: str, member: str | None, status: int
) -> None:
    member = (member or "Hero-{id}").replace("{id}", player.id)
    body = f'{{"key": "{key}", "score": {score}, "member": "{member}"}}'
    answer = player.http.post("/api/leaderboard", content=body, headers={"content-type": "application/json"})
    assert_error(answer, status)
    assert db.zscore(BOARD, member) is None and not db.exists("sessions:abc")


@pytest.mark.parametrize(("key", "count"), [("sessions:x", "10"), (BOARD, "0"), (BOARD, "ten"), (BOARD, "-1")])
def test_bad_leaderboard_reads_are_400(stack: Stack, key: str, count: str) -> None:
    assert_error(httpx.get(f"{stack.url}/api/leaderboard/{key}", params={"count": count}), 400)


def test_unknown_routes_and_methods_answer_json(stack: Stack) -> None:
    assert_error(httpx.get(f"{stack.url}/api/nothing"), 404)
    assert_error(httpx.delete(f"{stack.url}/api/playerstate"), 405)


@pytest.mark.parametrize(
    "cookie", ["cq_session=\xe9\xe9.\xe9\xe9", "cq_session=", "cq_session=...", "cq_session=a.b.c"]
)
def test_garbage_cookies_are_no_session(stack: Stack, cookie: str) -> None:
    answer = httpx.get(f"{stack.url}/api/playerstate/{'a' * 32}", headers={b"cookie": cookie.encode("latin-1")})
    assert_error(answer, 401, "No session")
