"""Recovery codes: a player takes their id, saves and board entries to another browser, and no one
else can guess their way in."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from devtools.stack import Stack
from services.gateway.recovery import ALPHABET
from shared import keys
from tests.conftest import Player, StackFactory
from tests.test_input import assert_error as assert_json_error

BOARD = "leaderboards:survivor-Recovered"  # a board of its own: the shared stack's tests read theirs whole
CODE_SHAPE = re.compile(f"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{4}}")
YEAR_S = 365 * 86400


@pytest.fixture
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, protocol=3)


def assert_error(answer: httpx.Response, status: int, contains: str = "") -> None:
    """As test_input's, and an answer to a caller without a cookie hands out no session."""
    assert_json_error(answer, status, contains)
    if "cookie" not in answer.request.headers:
        assert "set-cookie" not in answer.headers  # no session handed out


def issue(player: Player) -> str:
    answer = player.http.post("/session/recovery")
    assert answer.status_code == 200, answer.text
    code: str = answer.json()["code"]
    assert CODE_SHAPE.fullmatch(code), code
    return code


def recover(url: str, code: Any, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=url) as browser:
        return browser.post("/session/recover", json={"code": code}, headers=headers)


def wrong_code(avoiding: str = "") -> str:
    """A well-formed code that is nobody's, whose first group differs from `avoiding`'s."""
    while True:
        code = "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(5))
        if code[:4] != avoiding[:4]:
            return code


def carried_to_another_browser(url: str, db: redis.Redis | RedisCluster) -> None:
    """The whole journey, on a single Redis or a cluster: a player saves and scores, takes a code, and a
    second browser, which has a session of its own, continues as them, also once their session expired."""
    first = Player(url)
    assert first.save_with_fallback("playerstate", {"name": "Mover", "level": 7}).status_code == 200
    assert first.save_with_fallback("gamestate", {"map": "Grassland"}).status_code == 200
    code = issue(first)
    stored = [key for key in db.scan_iter(match=f"{keys.RECOVERY_PREFIX}*") if first.id.encode() in key]
    assert stored == [keys.recovery_player(first.id).encode()]
    code_hash = db.get(stored[0])
    assert isinstance(code_hash, bytes) and code.replace("-", "").encode() not in code_hash  # a hash, not the code
    assert db.get(keys.recovery_code(code_hash.decode())) == first.id.encode()
    assert YEAR_S - 60 < db.ttl(stored[0]) <= YEAR_S

    db.delete(keys.session(first.id))  # the old browser's session expired
    second = Player(url)  # another browser: the game asks for a session before anything else
    assert second.id != first.id
    typed = code.lower().replace("-", " ")  # as a person might type it
    moved = second.http.post("/session/recover", json={"code": typed})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"id": first.id}
    assert len(moved.headers.get_list("set-cookie")) == 1  # this session's cookie, not the one it had
    assert second.http.get("/session").json() == {"id": first.id}
    assert db.exists(keys.session(first.id))
    assert second.http.get(f"/api/playerstate/{first.id}").json() == {"id": first.id, "name": "Mover", "level": 7}
    assert second.http.get(f"/api/gamestate/{first.id}").json() == {"id": first.id, "map": "Grassland"}
    second.id = first.id
    assert second.save("playerstate", {"name": "Mover", "level": 8}).status_code == 200
    score = {"key": BOARD, "score": 4200, "member": f"Mover-{first.id}"}
    assert second.http.post("/api/leaderboard", json=score).status_code == 200
    assert db.zscore(BOARD, f"Mover-{first.id}") == 4200
    assert db.json().get(keys.player(first.id)) == {"id": first.id, "name": "Mover", "level": 8}

    # The code still works (a third device), and the first browser plays on beside the second.
    assert recover(url, code).json() == {"id": first.id}
    assert first.http.get(f"/api/playerstate/{first.id}").json()["level"] == 8


def test_a_code_carries_the_player_to_another_browser(stack: Stack, db: redis.Redis) -> None:
    carried_to_another_browser(stack.url, db)


def test_a_new_code_revokes_the_old(player: Player, stack: Stack, db: redis.Redis) -> None:
    old = issue(player)
    new = issue(player)
    assert new != old
    assert_error(recover(stack.url, old), 403, "recovery code")
    assert recover(stack.url, new).json() == {"id": player.id}
    entries = [key for key in db.scan_iter(match=keys.recovery_code("*")) if db.get(key) == player.id.encode()]
    assert len(entries) == 1  # the old code's entry went with it


def test_issuing_a_code_needs_a_live_session(stack: Stack, player: Player, db: redis.Redis) -> None:
    assert_error(httpx.post(f"{stack.url}/session/recovery"), 401, "session")
    db.delete(keys.session(player.id))  # the cookie is still signed and recent, its session is gone
    assert_error(player.http.post("/session/recovery"), 401, "expired")
    assert not db.exists(keys.recovery_player(player.id))


def test_a_wrong_code_is_403_and_opens_nothing(stack: Stack, db: redis.Redis) -> None:
    before = set(db.scan_iter(match="sessions:*"))
    assert_error(recover(stack.url, wrong_code()), 403, "Unknown, expired or replaced")
    assert set(db.scan_iter(match="sessions:*")) <= before


@pytest.mark.parametrize(
    ("body", "status", "contains"),
    [
        (b'{"code": ""}', 400, "not a recovery code"),
        (b'{"code": "' + b"A" * 10_000 + b'"}', 400, "at most 64 characters"),
        ('{"code": "ÄBCD-EFGH-JKMN-PQRS-TVWX"}'.encode(), 400, "not a recovery code"),
        (b'{"code": "ABCD-EFGH-JKMN-PQRS-TVWU"}', 400, "not a recovery code"),  # U is not in the alphabet
        (b'{"code": "ABCD-EFGH-JKMN-PQRS"}', 400, "not a recovery code"),  # a group short
        (b'{"code": 1234}', 400, "code"),
        (b'{"code": ["ABCD"]}', 400, "code"),
        (b'{"code": null}', 400, "code"),
        (b"{}", 400, "code: Field required"),
        (b'["ABCD-EFGH-JKMN-PQRS-TVWX"]', 400, ""),
        (b"{not json", 400, "Malformed JSON"),
        (b"", 400, ""),
    ],
)
def test_what_is_not_a_code_is_400_and_writes_nothing(
    stack: Stack, db: redis.Redis, body: bytes, status: int, contains: str
) -> None:
    before = set(db.scan_iter())
    answer = httpx.post(f"{stack.url}/session/recover", content=body, headers={"content-type": "application/json"})
    assert_error(answer, status, contains)
    assert set(db.scan_iter()) <= before  # not even a rate-limit count


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_recovery_that_is_not_json_is_415(stack: Stack, db: redis.Redis, content_type: str | None) -> None:
    """A cross-site form cannot send JSON, and a cross-site fetch of JSON needs a preflight we never grant:
    no other site can log a player into an id of its choosing."""
    before = set(db.scan_iter())
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"code": "ABCD-EFGH-JKMN-PQRS-TVWX"}' if content_type else b""
    assert_error(httpx.post(f"{stack.url}/session/recover", content=body, headers=headers), 415, "JSON")
    assert set(db.scan_iter()) <= before


def test_guesses_are_limited_per_address_and_per_prefix(make_stack: StackFactory) -> None:
    stack = make_stack(
        0,
        0,  # no workers: nothing here goes through the streams
        FORWARDED_ALLOW_IPS="127.0.0.1",  # so each request may come from an address of its own
        RATE_LIMIT_ADDRESS_RECOVERIES="4/hour",
        RATE_LIMIT_PREFIX_RECOVERIES="2/hour",
        RATE_LIMIT_SESSION_WRITES="3/hour",
    )
    player = Player(stack.url)
    issue(player), issue(player)
    code = issue(player)
    assert_error(player.http.post("/session/recovery"), 429, "Too many recovery codes")

    # Per prefix, whatever the address: two guesses sharing the code's first group spend it.
    for n in (1, 2):
        guess = code[:4] + wrong_code()[4:]
        assert_error(recover(stack.url, guess, **{"x-forwarded-for": f"10.0.0.{n}"}), 403)
    limited = recover(stack.url, code, **{"x-forwarded-for": "10.0.0.3"})
    assert_error(limited, 429, "Too many recovery attempts")  # the right code too, while limited
    assert int(limited.headers["retry-after"]) > 1000

    # Per address, whatever the prefix: the fifth attempt of an hour is refused.
    for _ in range(4):
        assert_error(recover(stack.url, wrong_code(avoiding=code), **{"x-forwarded-for": "10.0.0.9"}), 403)
    assert_error(recover(stack.url, wrong_code(avoiding=code), **{"x-forwarded-for": "10.0.0.9"}), 429)
    assert player.http.get("/session").json() == {"id": player.id}  # the player themselves is untouched
