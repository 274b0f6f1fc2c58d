"""The operators' console's API (services/gateway/admin.py): tokens, players, bans, boards, dead letters, audit.

Every route is asked with a right, a wrong and a missing token, and with a player's cookie alone.
Each test sends its own X-Forwarded-For (the stack trusts 127.0.0.1's), so each counts its failed
tokens apart from the others'.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from devtools import redis_cluster
from devtools.stack import Stack
from services.gateway.app import create_app
from services.gateway.layers import Gateway
from shared import keys
from shared.protocol import Event, EventType, partition_of
from shared.settings import Settings
from shared.worker import Entry
from tests.conftest import ARTIFACTS, FAST, Player, StackFactory, eventually, fresh_redis, started

ALICE, BOB = secrets.token_hex(24), secrets.token_hex(24)
TOKENS = f"alice:{ALICE},bob:{BOB}"
ADMIN_ENV = {"ADMIN_TOKENS": TOKENS, "FORWARDED_ALLOW_IPS": "127.0.0.1"}
GRASSLAND, MOUNTAINS = keys.leaderboard("Grassland"), keys.leaderboard("Mountains")
SOME_ID = "0" * 32
# Every admin API route, with a path that names something.
ROUTES = [
    ("GET", "/admin/api/players?name=Hero"),
    ("GET", f"/admin/api/players/{SOME_ID}"),
    ("DELETE", f"/admin/api/players/{SOME_ID}"),
    ("POST", f"/admin/api/players/{SOME_ID}/ban"),
    ("DELETE", f"/admin/api/players/{SOME_ID}/ban"),
    ("DELETE", f"/admin/api/leaderboard/{GRASSLAND}/entries/Hero-{SOME_ID}"),
    ("GET", "/admin/api/streams"),
    ("POST", "/admin/api/dead-letters/1-0/replay"),
    ("DELETE", "/admin/api/dead-letters/1-0"),
    ("GET", "/admin/api/audit"),
]


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway with two operators and a worker of each kind, on a Redis of its own."""
    with (
        fresh_redis(tmp_path_factory.mktemp("admin-redis")) as url,
        started(url, ARTIFACTS / "logs/admin_stack.log", 1, 1, **ADMIN_ENV) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def db(admin_stack: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(admin_stack.redis_url) as client:
        yield client


class Operator:
    """An HTTP client of the admin API from an address of its own."""

    def __init__(self, base_url: str, token: str = ALICE) -> None:
        address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
        self.http = httpx.Client(base_url=base_url, timeout=30, headers={"X-Forwarded-For": address})
        self.token = token

    def __call__(self, method: str, path: str, token: str | None = None) -> httpx.Response:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {token or self.token}"})


@pytest.fixture
def operator(admin_stack: Stack) -> Iterator[Operator]:
    client = Operator(admin_stack.url)
    yield client
    client.http.close()


def player_on(stack: Stack, name: str, scores: dict[str, int]) -> Player:
    player = Player(stack.url)
    assert player.save("playerstate", {"name": name, "secret": "kept"}, "POST").status_code == 200
    for board, points in scores.items():
        answer = player.http.post(
            "/api/leaderboard", json={"key": board, "score": points, "member": f"{name}-{player.id}"}
        )
        assert answer.status_code == 200, answer.text
    return player


def top(stack: Stack, board: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.url}/api/leaderboard/{board}?count=100")
    return answer.json() if answer.status_code == 200 else []


def assert_json_error(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["status"] == status


def test_every_route_needs_an_operators_token(admin_stack: Stack) -> None:
    player = Player(admin_stack.url)  # a player's cookie opens nothing here
    for method, path in ROUTES:
        operator = Operator(admin_stack.url)  # an address a route, so the failures stay under the limit
        for headers in ({}, {"Authorization": "Bearer " + "x" * 48}, {"Authorization": ALICE}, {"Authorization": ""}):
            answer = operator.http.request(method, path, headers=headers)
            assert_json_error(answer, 401)
            assert answer.headers["www-authenticate"] == "Bearer"
        assert_json_error(player.http.request(method, path, headers=operator.http.headers), 401)
        answered = operator(method, path)
        assert answered.status_code not in (401, 403, 500), (method, path, answered.text)
        assert answered.status_code >= 300 or answered.headers["cache-control"] == "no-store"
        assert operator(method, path, BOB).status_code == answered.status_code or method != "GET"


def test_failed_tokens_are_limited_per_address_and_never_lock_an_operator_out(
    admin_stack: Stack, operator: Operator
) -> None:
    answers = [operator("GET", "/admin/api/audit", "y" * 48).status_code for _ in range(12)]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    limited = operator("GET", "/admin/api/audit", "y" * 48)
    assert_json_error(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert operator("GET", "/admin/api/audit").status_code == 200  # the right token, same address
    elsewhere = Operator(admin_stack.url)
    assert_json_error(elsewhere("GET", "/admin/api/audit", "y" * 48), 401)


def test_without_admin_tokens_every_admin_path_is_a_json_404(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {ALICE}"}) as http:
        for method, path in [*ROUTES, ("GET", "/admin"), ("GET", "/admin/"), ("GET", "/admin/admin.js")]:
            assert_json_error(http.request(method, path), 404)


def test_the_console_is_served_with_a_strict_content_security_policy(admin_stack: Stack) -> None:
    for path, kind in (("/admin", "text/html"), ("/admin/", "text/html"), ("/admin/admin.js", "text/javascript")):
        answer = httpx.get(admin_stack.url + path)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(kind)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert_json_error(httpx.get(admin_stack.url + "/admin/index.html.bak"), 404)
    assert_json_error(httpx.get(admin_stack.url + "/admin/api"), 404)


def test_admin_paths_as_every_api_path_a_trailing_slash_head_and_json_405(
    admin_stack: Stack, operator: Operator
) -> None:
    assert operator("GET", "/admin/api/audit/").status_code == 200
    head = operator.http.head(admin_stack.url + "/admin")
    assert head.status_code == 200 and head.content == b""
    wrong = operator("PUT", "/admin/api/audit")
    assert_json_error(wrong, 405)
    assert wrong.headers["allow"] == "GET, HEAD"


def test_admin_routes_are_in_the_api_document_only_when_asked() -> None:
    def paths(**settings: Any) -> list[str]:
        app = create_app(Settings(admin_tokens=TOKENS, api_docs=True, **settings))
        assert isinstance(app, Gateway)
        return list(app.app.openapi()["paths"])

    assert not [path for path in paths() if path.startswith("/admin")]
    shown = [path for path in paths(admin_openapi=True) if path.startswith("/admin")]
    assert "/admin/api/players/{player_id}/ban" in shown and "/admin" not in shown


def test_search_and_a_players_record(admin_stack: Stack, operator: Operator) -> None:
    name = "Findme" + secrets.token_hex(3)
    found = player_on(admin_stack, name, {GRASSLAND: 70, MOUNTAINS: 30})
    found.save("gamestate", {"chapter": 2}, "POST")
    answer = operator("GET", f"/admin/api/players?name={name}")
    assert answer.status_code == 200
    assert answer.json() == {
        "total": 1,
        "documents": [{"id": keys.player(found.id), "value": {"id": found.id, "name": name, "secret": "kept"}}],
    }
    assert operator("GET", f"/admin/api/players?id={found.id}").json()["total"] == 1
    assert_json_error(operator("GET", "/admin/api/players"), 400)

    record = operator("GET", f"/admin/api/players/{found.id}").json()
    assert record["saves"] == {
        "player": {"id": found.id, "name": name, "secret": "kept"},
        "game": {"id": found.id, "chapter": 2},
    }
    entries = {entry["key"]: entry for entry in record["leaderboards"]}
    assert entries[GRASSLAND]["value"] == f"{name}-{found.id}" and entries[GRASSLAND]["score"] == 70
    assert entries[GRASSLAND]["rank"] == 1 + sum(1 for row in top(admin_stack, GRASSLAND) if row["score"] > 70)
    assert record["recovery"] == {"active": False} and record["banned"] is False and record["aside"] == []
    assert found.http.post("/session/recovery").status_code == 200
    assert operator("GET", f"/admin/api/players/{found.id}").json()["recovery"] == {"active": True}
    assert_json_error(operator("GET", "/admin/api/players/not-an-id!"), 400)


def test_a_ban_takes_every_entry_off_and_an_unban_puts_it_back(
    admin_stack: Stack, operator: Operator, db: redis.Redis
) -> None:
    cheat = player_on(admin_stack, "Cheat", {GRASSLAND: 999_000, MOUNTAINS: 998_000})
    fair = player_on(admin_stack, "Fair", {GRASSLAND: 500})
    member = f"Cheat-{cheat.id}"
    assert member in [row["value"] for row in top(admin_stack, GRASSLAND)]

    banned = operator("POST", f"/admin/api/players/{cheat.id}/ban")
    assert banned.json() == {"status": 200, "message": "Player banned"}
    for board in (GRASSLAND, MOUNTAINS):
        assert member not in [row["value"] for row in top(admin_stack, board)]
    assert f"Fair-{fair.id}" in [row["value"] for row in top(admin_stack, GRASSLAND)]
    record = operator("GET", f"/admin/api/players/{cheat.id}").json()
    assert record["banned"] is True and record["leaderboards"] == []
    assert {(kept["key"], kept["value"], kept["score"]) for kept in record["aside"]} == {
        (GRASSLAND, member, 999_000), (MOUNTAINS, member, 998_000),
    }  # fmt: skip
    refused = cheat.http.post("/api/leaderboard", json={"key": GRASSLAND, "score": 1_000_000, "member": member})
    assert_json_error(refused, 403)
    assert cheat.save("playerstate", {"name": "Cheat", "level": 2}).status_code == 200  # still plays and saves
    assert operator("POST", f"/admin/api/players/{cheat.id}/ban").status_code == 200  # again: harmless

    unbanned = operator("DELETE", f"/admin/api/players/{cheat.id}/ban")
    assert unbanned.json() == {"status": 200, "message": "Player unbanned"}
    assert db.zscore(GRASSLAND, member) == 999_000 and db.zscore(MOUNTAINS, member) == 998_000
    assert top(admin_stack, GRASSLAND)[0]["value"] == member
    record = operator("GET", f"/admin/api/players/{cheat.id}").json()
    assert record["banned"] is False and record["aside"] == [] and len(record["leaderboards"]) == 2
    again = cheat.http.post("/api/leaderboard", json={"key": GRASSLAND, "score": 999_500, "member": member})
    assert again.json()["message"] == "Score recorded"
    assert operator("DELETE", f"/admin/api/players/{cheat.id}/ban").status_code == 200  # not banned: harmless


def test_an_unban_keeps_who_reached_a_tied_score_first(admin_stack: Stack, operator: Operator) -> None:
    board = keys.leaderboard("Scores")
    first = player_on(admin_stack, "First", {board: 777})
    second = player_on(admin_stack, "Second", {board: 777})
    order = [row["value"] for row in top(admin_stack, board)]
    assert order.index(f"First-{first.id}") < order.index(f"Second-{second.id}")
    assert operator("POST", f"/admin/api/players/{first.id}/ban").status_code == 200
    assert f"First-{first.id}" not in [row["value"] for row in top(admin_stack, board)]
    assert operator("DELETE", f"/admin/api/players/{first.id}/ban").status_code == 200
    assert [row["value"] for row in top(admin_stack, board)] == order


def test_a_score_admitted_before_the_ban_is_refused_on_the_board_by_the_worker(
    admin_stack: Stack, operator: Operator, db: redis.Redis
) -> None:
    """The worker's own refusal: a score published after the ban, as one in flight would be."""
    late = player_on(admin_stack, "Late", {GRASSLAND: 10})
    assert operator("POST", f"/admin/api/players/{late.id}/ban").status_code == 200
    partition = partition_of(late.id, 1)
    event = Event.new(
        EventType.SCORE_SUBMIT, late.id, {"key": GRASSLAND, "score": 50, "member": f"Late-{late.id}"}, 5000, partition
    )
    db.xadd(keys.command_stream("scores", partition), event.encode())  # type: ignore[arg-type]
    eventually(lambda: bool(db.xlen(event.reply_to)), 10, "the worker answers")
    ((_, fields),) = cast(list[Entry], db.xrange(event.reply_to))
    assert int(fields[b"status"]) == 403
    assert db.zscore(GRASSLAND, f"Late-{late.id}") is None
    kept = cast(bytes, db.hget(keys.board_aside(GRASSLAND), late.id))
    assert kept.split(b" ")[::2] == [b"10", b"Late-" + late.id.encode()]


def test_erasing_a_player_as_delete_api_account_does(admin_stack: Stack, operator: Operator, db: redis.Redis) -> None:
    gone = player_on(admin_stack, "Erased", {GRASSLAND: 61, MOUNTAINS: 62})
    assert gone.http.post("/session/recovery").status_code == 200
    assert operator("POST", f"/admin/api/players/{gone.id}/ban").status_code == 200
    assert db.hexists(keys.board_aside(GRASSLAND), gone.id)
    erased = operator("DELETE", f"/admin/api/players/{gone.id}")
    assert erased.json() == {"status": 200, "message": "Account deleted"}
    record = operator("GET", f"/admin/api/players/{gone.id}").json()
    assert record["saves"] == {"player": None, "game": None} and record["leaderboards"] == []
    assert record["recovery"] == {"active": False} and record["aside"] == []
    assert record["banned"] is True  # the operator's ban stays; what it kept of the player does not
    assert not db.exists(keys.session(gone.id))
    assert_json_error(gone.http.post("/api/playerstate", json={"playerData": {"id": gone.id}}), 401)
    assert operator("DELETE", f"/admin/api/players/{gone.id}").status_code == 200  # again: harmless
    assert operator("GET", "/admin/api/audit?count=1").json()[0]["action"] == "erase"


def test_a_ban_no_worker_answers_is_a_504_never_applied_late_and_audited(make_stack: StackFactory) -> None:
    stack = make_stack(**ADMIN_ENV, **FAST)
    operator = Operator(stack.url)
    late = player_on(stack, "Late", {GRASSLAND: 31})
    stack.stop("leaderboard-1")
    timed_out = operator("POST", f"/admin/api/players/{late.id}/ban")
    assert_json_error(timed_out, 504)
    assert timed_out.headers["retry-after"] == "1"
    stack.spawn("leaderboard")
    stack.wait_healthy()
    record = operator("GET", f"/admin/api/players/{late.id}").json()
    assert record["banned"] is False and [entry["score"] for entry in record["leaderboards"]] == [31]
    assert [(row["action"], row["status"]) for row in operator("GET", "/admin/api/audit").json()] == [("ban", "504")]
    assert operator("POST", f"/admin/api/players/{late.id}/ban").status_code == 200  # the retry does it
    assert operator("GET", f"/admin/api/players/{late.id}").json()["banned"] is True


def test_removing_one_entry(admin_stack: Stack, operator: Operator, db: redis.Redis) -> None:
    gone = player_on(admin_stack, "Gone", {GRASSLAND: 42, MOUNTAINS: 43})
    member = f"Gone-{gone.id}"
    path = f"/admin/api/leaderboard/{GRASSLAND}/entries/{member}"
    assert operator("DELETE", path).json() == {"status": 200, "message": "Entry removed"}
    assert db.zscore(GRASSLAND, member) is None and db.zscore(MOUNTAINS, member) == 43
    assert db.hget(keys.board_members(GRASSLAND), gone.id) is None
    assert_json_error(operator("DELETE", path), 404)
    assert_json_error(operator("DELETE", f"/admin/api/leaderboard/leaderboards:survivor-Nowhere/entries/{member}"), 400)
    assert gone.http.post("/api/leaderboard", json={"key": GRASSLAND, "score": 5, "member": member}).status_code == 200
    assert db.zscore(GRASSLAND, member) == 5  # a new score after a removal starts afresh


def dead_letter(db: redis.Redis, event: Event, reason: str = "delivered 5 times") -> str:
    """A dead letter as a worker writes it: the entry's fields and why."""
    stream = keys.command_stream("saves" if event.type.startswith(("player", "game")) else "scores", 0)
    fields = {**event.encode(), b"dead_reason": reason.encode(), b"dead_entry": b"1-0", b"dead_stream": stream.encode()}
    return db.xadd(keys.dead_letters(0), fields).decode()  # type: ignore[arg-type, union-attr]


def test_streams_and_dead_letters_replayed_and_dropped_by_make_deadletters_rules(
    admin_stack: Stack, operator: Operator, db: redis.Redis
) -> None:
    lost = Player(admin_stack.url)
    score = Event.new(
        EventType.SCORE_SUBMIT, lost.id, {"key": MOUNTAINS, "score": 77, "member": f"Lost-{lost.id}"}, 1, 0
    )
    save = Event.new(EventType.PLAYER_CREATE, lost.id, {"id": lost.id, "name": "Lost", "level": 1}, 1, 0)
    junk = Event.new(EventType.SCORE_SUBMIT, lost.id, {"key": MOUNTAINS, "score": "high", "member": "x"}, 1, 0)
    score_letter, save_letter, junk_letter = dead_letter(db, score), dead_letter(db, save), dead_letter(db, junk)

    view = operator("GET", "/admin/api/streams").json()
    lengths = {stream["key"]: stream for stream in view["streams"]}
    assert set(lengths) == {keys.command_stream("saves", 0), keys.command_stream("scores", 0)}
    groups = lengths[keys.command_stream("saves", 0)]["groups"]
    assert [group["name"] for group in groups] == ["saves"] and groups[0]["pending"] == 0 and groups[0]["lag"] == 0
    letters = {letter["id"]: letter for letter in view["deadLetters"]["newest"]}
    assert view["deadLetters"]["total"] >= 3
    assert letters[score_letter]["payload"] == score.payload and letters[score_letter]["type"] == "score.submit"
    assert letters[score_letter]["replay"] == "a score only ever raises its board (ZADD GT): it replays freely"
    assert "cannot be replayed" in letters[junk_letter]["replay"]

    replayed = operator("POST", f"/admin/api/dead-letters/{score_letter}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["reply"] == {"status": 200, "message": "Score recorded"}
    assert db.zscore(MOUNTAINS, f"Lost-{lost.id}") == 77
    assert_json_error(operator("POST", f"/admin/api/dead-letters/{score_letter}/replay"), 404)  # gone once applied
    assert_json_error(operator("POST", f"/admin/api/dead-letters/{junk_letter}/replay"), 422)

    assert lost.save("playerstate", {"name": "Lost", "level": 9}, "POST").status_code == 200  # newer than the letter
    refused = operator("POST", f"/admin/api/dead-letters/{save_letter}/replay")
    assert_json_error(refused, 409)
    assert "may be newer than dead letter" in refused.json()["message"]
    forced = operator("POST", f"/admin/api/dead-letters/{save_letter}/replay?force=true")
    assert forced.status_code == 200, forced.text
    assert db.json().get(keys.player(lost.id)) == save.payload

    assert operator("DELETE", f"/admin/api/dead-letters/{junk_letter}").json()["message"].endswith("dropped")
    assert_json_error(operator("DELETE", f"/admin/api/dead-letters/{junk_letter}"), 404)
    assert_json_error(operator("DELETE", "/admin/api/dead-letters/123"), 400)


def test_every_write_is_audited_with_who_what_and_the_answer(admin_stack: Stack, operator: Operator) -> None:
    target = player_on(admin_stack, "Audited", {GRASSLAND: 3})
    by_bob = Operator(admin_stack.url, BOB)
    operator("POST", f"/admin/api/players/{target.id}/ban")
    by_bob("DELETE", f"/admin/api/players/{target.id}/ban")
    by_bob("DELETE", f"/admin/api/leaderboard/{GRASSLAND}/entries/Nobody-{target.id}")
    operator("GET", f"/admin/api/players/{target.id}")  # a read: not audited
    rows = operator("GET", "/admin/api/audit?count=3").json()
    assert [(row["operator"], row["action"], row["target"], row["status"]) for row in rows] == [
        ("bob", "remove-entry", f"{GRASSLAND} Nobody-{target.id}", "404"),
        ("bob", "unban", target.id, "200"),
        ("alice", "ban", target.id, "200"),
    ]
    assert all(row["at"].endswith("Z") and row["request_id"] for row in rows)
    assert_json_error(operator("GET", "/admin/api/audit?count=0"), 400)


def test_ban_and_unban_on_a_cluster_with_seasons(tmp_path: Path) -> None:
    """Seasons on a cluster: a ban's moves are follow-ups in every board's slot (current, archive,
    all-time, on different masters), and the gateway refuses a banned player's score first."""
    env = {
        **ADMIN_ENV,
        "LEADERBOARD_MAPS": "Grassland,Mountains",
        "LEADERBOARD_SEASON": "daily",
        "STREAM_PARTITIONS": "3",
    }
    with (
        redis_cluster.running(redis_cluster.spare_ports(), tmp_path) as cluster,
        started(cluster.url, ARTIFACTS / "logs/admin_cluster.log", 1, 1, **env) as stack,
        RedisCluster.from_url(cluster.url) as db,
    ):
        operator = Operator(stack.url)
        cheat = player_on(stack, "Cheat", {GRASSLAND: 900, MOUNTAINS: 800})
        fair = player_on(stack, "Fair", {GRASSLAND: 100})
        member = f"Cheat-{cheat.id}"
        (label,) = {
            entry["season"] for entry in operator("GET", f"/admin/api/players/{cheat.id}").json()["leaderboards"]
        } - {None}
        archive, all_time = keys.season_board(GRASSLAND, label), keys.all_time_board(GRASSLAND)
        masters = {
            db.get_node_from_key(key).name
            for key in (GRASSLAND, archive, all_time, keys.bans(partition_of(cheat.id, 3)))
        }
        assert len(masters) > 1
        boards = (GRASSLAND, MOUNTAINS, archive, all_time, keys.all_time_board(MOUNTAINS))

        assert operator("POST", f"/admin/api/players/{cheat.id}/ban").status_code == 200
        assert [db.zscore(board, member) for board in boards] == [None] * 5
        assert db.zscore(GRASSLAND, f"Fair-{fair.id}") == 100
        record = operator("GET", f"/admin/api/players/{cheat.id}").json()
        assert record["banned"] is True and len(record["aside"]) == 6 and record["leaderboards"] == []
        refused = cheat.http.post("/api/leaderboard", json={"key": GRASSLAND, "score": 5000, "member": member})
        assert_json_error(refused, 403)
        assert cheat.save("playerstate", {"name": "Cheat", "level": 3}).status_code == 200

        assert operator("DELETE", f"/admin/api/players/{cheat.id}/ban").status_code == 200
        assert [db.zscore(board, member) for board in boards] == [900, 800, 900, 900, 800]
        assert (
            cheat.http.post("/api/leaderboard", json={"key": GRASSLAND, "score": 950, "member": member}).status_code
            == 200
        )
        assert db.zscore(archive, member) == 950
        rows = operator("GET", "/admin/api/audit").json()
        assert [(row["action"], row["status"]) for row in rows[:2]] == [("unban", "200"), ("ban", "200")]
