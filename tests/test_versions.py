"""Saves a player can trust: versions (ETag, If-Match, If-None-Match), merge patches and deletes.

Every refused request is a JSON 4xx, and Redis is checked to hold exactly what it held before.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from devtools.stack import Stack
from services.gateway.store import Store
from shared import keys
from shared.pipelined import PipelinedRedis
from shared.protocol import Outcome
from shared.settings import Settings
from shared.worker import APPLY_SCRIPT

MERGE = {"content-type": "application/merge-patch+json"}
ETAG = re.compile(r'"[0-9]+-[0-9]+"')


@pytest.fixture
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


class Tab:
    """One browser tab of a player, on one of the gateways: its own HTTP client, the session's cookie."""

    def __init__(self, base_url: str, cookies: httpx.Cookies | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, cookies=cookies)
        if cookies is None:
            self.id: str = self.http.get("/session").raise_for_status().json()["id"]
        else:
            self.id = self.http.get("/session").json()["id"]

    def other_tab(self, base_url: str | None = None) -> Tab:
        return Tab(base_url or str(self.http.base_url), self.http.cookies)

    def body(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"playerData" if kind == "playerstate" else "gameData": {"id": self.id, **fields}}

    def write(self, method: str, kind: str, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
        return self.http.request(method, f"/api/{kind}", json=self.body(kind, **fields), headers=headers)

    def merge(self, kind: str, patch: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.patch(f"/api/{kind}", content=orjson.dumps(patch), headers={**MERGE, **(headers or {})})

    def get(self, kind: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.get(f"/api/{kind}/{self.id}", headers=headers)


@pytest.fixture
def tab(stack: Stack) -> Iterator[Tab]:
    new = Tab(stack.url)
    yield new
    new.http.close()


def refused(answer: httpx.Response, status: int) -> str:
    """The JSON error's message, after checking it is one."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == status and isinstance(body["message"], str)
    assert "etag" not in answer.headers
    return str(body["message"])


def stored(db: redis.Redis, tab: Tab, kind: str = "playerstate") -> tuple[Any, Any]:
    """The document and its version as Redis holds them (the version key is a JSON string)."""
    key = keys.player(tab.id) if kind == "playerstate" else keys.game(tab.id)
    version = db.execute_command("JSON.GET", keys.version(key))
    return db.execute_command("JSON.GET", key), version and orjson.loads(version).encode()


# Versions


@pytest.mark.parametrize("kind", ["playerstate", "gamestate"])
def test_every_read_and_write_carries_the_version_it_stored(tab: Tab, kind: str, db: redis.Redis) -> None:
    created = tab.write("POST", kind, level=1)
    assert created.status_code == 200 and ETAG.fullmatch(created.headers["etag"])
    read = tab.get(kind)
    assert read.headers["etag"] == created.headers["etag"]
    assert read.headers["etag"] == f'"{stored(db, tab, kind)[1].decode()}"'
    updated = tab.write("PATCH", kind, level=2)
    assert updated.status_code == 200 and updated.headers["etag"] not in ("", created.headers["etag"])
    assert tab.get(kind).headers["etag"] == updated.headers["etag"]


def test_a_read_is_not_modified_while_the_version_is_the_same(tab: Tab) -> None:
    etag = tab.write("POST", "playerstate", level=1).headers["etag"]
    for match in (etag, f"W/{etag}", f'"1-0", {etag}', "*"):
        answer = tab.get("playerstate", {"If-None-Match": match})
        assert (answer.status_code, answer.content, answer.headers["etag"]) == (304, b"", etag)
    answer = tab.get("playerstate", {"If-None-Match": '"1-0"'})
    assert answer.status_code == 200 and answer.json()["level"] == 1


def test_two_tabs_can_no_longer_overwrite_each_other(tab: Tab, db: redis.Redis) -> None:
    first = tab.write("POST", "playerstate", gold=10).headers["etag"]
    other = tab.other_tab()
    assert other.get("playerstate").headers["etag"] == first
    newer = tab.write("PATCH", "playerstate", {"If-Match": first}, gold=20)
    assert newer.status_code == 200
    before = stored(db, tab)
    message = refused(other.write("PATCH", "playerstate", {"If-Match": first}, gold=5), 412)
    assert "version" in message
    refused(other.write("POST", "playerstate", {"If-Match": first}, gold=5), 412)
    assert stored(db, tab) == before
    # The second tab reads the newer save and its version, and may then write over it.
    latest = other.get("playerstate")
    assert latest.json()["gold"] == 20
    assert other.write("PATCH", "playerstate", {"If-Match": latest.headers["etag"]}, gold=25).status_code == 200


def test_if_match_takes_a_list_and_star(tab: Tab) -> None:
    etag = tab.write("POST", "playerstate", level=1).headers["etag"]
    listed = tab.write("PATCH", "playerstate", {"If-Match": f'"1-0", W/"2-0", {etag}'}, level=2)
    assert listed.status_code == 200
    assert tab.write("PATCH", "playerstate", {"If-Match": "*"}, level=3).status_code == 200


def test_if_none_match_star_creates_only_once(tab: Tab, db: redis.Redis) -> None:
    created = tab.write("POST", "playerstate", {"If-None-Match": "*"}, level=1)
    assert created.status_code == 200
    before = stored(db, tab)
    refused(tab.write("POST", "playerstate", {"If-None-Match": "*"}, level=9), 412)
    assert stored(db, tab) == before


def test_a_save_written_before_versions_has_a_stable_one(tab: Tab, db: redis.Redis) -> None:
    db.execute_command("JSON.SET", keys.player(tab.id), "$", orjson.dumps({"id": tab.id, "old": True}))
    etags = {tab.get("playerstate").headers["etag"] for _ in range(2)}
    assert etags == {'"0-0"'}
    assert tab.write("PATCH", "playerstate", {"If-Match": '"0-0"'}, old=False).status_code == 200
    assert tab.get("playerstate").headers["etag"] != '"0-0"'


def test_a_version_written_before_versions_were_json_still_holds(tab: Tab, db: redis.Redis) -> None:
    """A version key from before it was a JSON string (a plain string) reads and matches as it did;
    the next write makes it JSON."""
    key = keys.player(tab.id)
    db.execute_command("JSON.SET", key, "$", orjson.dumps({"id": tab.id, "level": 1}))
    db.set(keys.version(key), "1700000000000-0")
    assert tab.get("playerstate").headers["etag"] == '"1700000000000-0"'
    refused(tab.write("PATCH", "playerstate", {"If-Match": '"0-0"'}, level=2), 412)
    written = tab.write("PATCH", "playerstate", {"If-Match": '"1700000000000-0"'}, level=2)
    assert written.status_code == 200
    assert db.type(keys.version(key)) == b"ReJSON-RL" and db.ttl(keys.version(key)) > 0
    assert tab.get("playerstate").headers["etag"] == written.headers["etag"] == f'"{stored(db, tab)[1].decode()}"'


def test_a_save_and_its_version_are_read_at_one_instant(redis_url: str, db: redis.Redis) -> None:
    """Written together by another client, never read one ahead of the other."""
    key = keys.player("one-instant")

    async def body() -> set[tuple[bytes | None, str | None]]:
        store = Store(PipelinedRedis(redis_url))
        seen = set()
        writer = threading.Thread(target=write_versions, args=(db, key, 1500))
        writer.start()
        try:
            while writer.is_alive():
                seen.add(await store.versioned_document(key))
        finally:
            writer.join()
            await store.aclose()
        return seen

    seen = asyncio.run(body()) - {(None, None)}
    assert len(seen) > 50  # the reads saw the writes go by
    for document, version in seen:
        assert document is not None and version == f"{orjson.loads(document)['n']}-0"


def write_versions(db: redis.Redis, key: str, count: int) -> None:
    for n in range(1, count + 1):
        with db.pipeline(transaction=True) as pipe:
            pipe.execute_command("JSON.SET", key, "$", orjson.dumps({"n": n}))
            pipe.execute_command("JSON.SET", keys.version(key), "$", f'"{n}-0"')
            pipe.execute()


@pytest.mark.parametrize(
    "header",
    [
        {"If-Match": "abc"},
        {"If-Match": '"unterminated'},
        {"If-Match": "W/abc"},
        {"If-Match": '*, "1-0"'},
        {"If-Match": ","},
        {"If-Match": '"a" "b"'},
        {"If-Match": ", ".join(['"1-0"'] * 33)},
        {"If-None-Match": '"1-0"'},
        {"If-Match": '"1-0"', "If-None-Match": "*"},
    ],
    ids=["bare", "unterminated", "bare weak", "star in a list", "empty list", "no comma", "33 tags", "inm tag", "both"],
)
def test_malformed_preconditions_are_400_and_write_nothing(tab: Tab, db: redis.Redis, header: dict[str, str]) -> None:
    tab.write("POST", "playerstate", level=1)
    before = stored(db, tab)
    for method in ("POST", "PATCH"):
        refused(tab.write(method, "playerstate", header, level=2), 400)
    refused(tab.merge("playerstate", {"playerData": {"id": tab.id, "level": 2}}, header), 400)
    refused(tab.http.delete(f"/api/playerstate/{tab.id}", headers=header), 400)
    assert stored(db, tab) == before


def test_a_malformed_if_none_match_on_a_read_is_400(tab: Tab) -> None:
    tab.write("POST", "playerstate", level=1)
    refused(tab.get("playerstate", {"If-None-Match": "nope"}), 400)


def test_weak_and_foreign_tags_never_match_a_write(tab: Tab, db: redis.Redis) -> None:
    etag = tab.write("POST", "playerstate", level=1).headers["etag"]
    before = stored(db, tab)
    for match in (f"W/{etag}", '"not-a-version"', '"1-0"'):
        refused(tab.write("PATCH", "playerstate", {"If-Match": match}, level=2), 412)
    assert stored(db, tab) == before


def test_if_match_on_a_missing_save_is_412(tab: Tab, db: redis.Redis) -> None:
    for method in ("POST", "PATCH"):
        refused(tab.write(method, "playerstate", {"If-Match": '"1-0"'}, level=1), 412)
        refused(tab.write(method, "playerstate", {"If-Match": "*"}, level=1), 412)
    refused(tab.merge("playerstate", {"playerData": {"id": tab.id, "level": 1}}, {"If-Match": "*"}), 412)
    assert stored(db, tab) == (None, None)


# Deletes


@pytest.mark.parametrize(("kind", "noun"), [("playerstate", "Player"), ("gamestate", "Game")])
def test_delete_your_own_save(tab: Tab, db: redis.Redis, kind: str, noun: str) -> None:
    tab.write("POST", kind, level=1)
    answer = tab.http.delete(f"/api/{kind}/{tab.id}")
    assert (answer.status_code, answer.json()) == (200, {"status": 200, "message": f"{noun} deleted"})
    assert "etag" not in answer.headers
    assert tab.get(kind).status_code == 404
    document, version = stored(db, tab, kind)
    assert document is None and version is not None
    # Kept as long as the stream keeps older commands, so none of them brings the save back; then gone.
    key = keys.player(tab.id) if kind == "playerstate" else keys.game(tab.id)
    assert 0 < db.ttl(keys.version(key)) <= Settings().stream_retention_ms // 1000
    refused(tab.http.delete(f"/api/{kind}/{tab.id}"), 404)
    assert tab.write("POST", kind, level=2).status_code == 200  # a new save after a reset
    assert tab.get(kind).json()["level"] == 2


def test_delete_of_another_players_save_is_403(tab: Tab, stack: Stack, db: redis.Redis) -> None:
    owner = Tab(stack.url)
    owner.write("POST", "playerstate", level=1)
    before = stored(db, owner)
    for kind in ("playerstate", "gamestate"):
        refused(tab.http.delete(f"/api/{kind}/{owner.id}"), 403)
    assert stored(db, owner) == before


def test_a_conditional_delete_takes_only_that_version(tab: Tab, db: redis.Redis) -> None:
    first = tab.write("POST", "playerstate", level=1).headers["etag"]
    tab.write("PATCH", "playerstate", level=2)
    before = stored(db, tab)
    refused(tab.http.delete(f"/api/playerstate/{tab.id}", headers={"If-Match": first}), 412)
    assert stored(db, tab) == before
    latest = tab.get("playerstate").headers["etag"]
    assert tab.http.delete(f"/api/playerstate/{tab.id}", headers={"If-Match": latest}).status_code == 200


def test_an_older_command_redelivered_after_a_delete_does_not_bring_the_save_back(db: redis.Redis) -> None:
    """apply_commands.lua as the worker runs it: a create whose stream id is older than the delete's."""
    key = keys.player("resurrect")
    db.execute_command("JSON.SET", keys.version(key), "$", '"2000-0"')  # what a delete with stream id 2000-0 leaves
    older_create = {
        "command": "JSON.SET", "key": 1, "version": 2, "args": [2, 2],
        "expire_s": 60, "deadline_ms": 2**50, "seq": "1999-5",
    }  # fmt: skip
    batch = orjson.dumps({"commands": [older_create]})
    outcomes = db.eval(APPLY_SCRIPT.source, 2, key, keys.version(key), batch, "$", '{"id":"resurrect"}')
    assert outcomes == [Outcome.SUPERSEDED]
    assert db.exists(key) == 0


# Merge patches


def test_a_merge_patch_changes_only_what_it_names(tab: Tab, db: redis.Redis) -> None:
    tab.write("POST", "playerstate", name="Hero", level=1, pos={"x": 1, "y": 2}, bag=["a", "b"])
    patch = {"playerData": {"id": tab.id, "level": 2, "pos": {"y": None, "z": 3}, "bag": ["c"], "name": None}}
    answer = tab.merge("playerstate", patch)
    assert (answer.status_code, answer.json()["message"]) == (200, "Player updated")
    assert answer.headers["etag"] == tab.get("playerstate").headers["etag"]
    assert tab.get("playerstate").json() == {"id": tab.id, "level": 2, "pos": {"x": 1, "z": 3}, "bag": ["c"]}


def test_a_merge_patch_with_if_match(tab: Tab, db: redis.Redis) -> None:
    first = tab.write("POST", "gamestate", turn=1).headers["etag"]
    second = tab.merge("gamestate", {"gameData": {"id": tab.id, "turn": 2}}, {"If-Match": first})
    assert second.status_code == 200
    before = stored(db, tab, "gamestate")
    refused(tab.merge("gamestate", {"gameData": {"id": tab.id, "turn": 3}}, {"If-Match": first}), 412)
    assert stored(db, tab, "gamestate") == before


def test_a_merge_patch_needs_a_save(tab: Tab, db: redis.Redis) -> None:
    refused(tab.merge("playerstate", {"playerData": {"id": tab.id, "level": 1}}), 404)
    assert stored(db, tab) == (None, None)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"down": value}
    return value


@pytest.mark.parametrize(
    ("patch", "status"),
    [
        ([1, 2], 400),
        ({"playerData": [1]}, 400),
        ({"playerData": "text"}, 400),
        ({"playerData": None}, 400),
        ({"playerData": {"level": 3}}, 400),
        ({"playerData": {"id": None, "level": 3}}, 400),
        ({"playerData": {"id": "someoneelse", "level": 3}}, 403),
        ({"playerData": {"id": "{me}", "name": "Not a name!"}}, 400),
        ({"playerData": {"id": "{me}", "deep": nested(40)}}, 400),
        ({"playerData": {"id": "{me}", "many": list(range(2000))}}, 413),
    ],
    ids=["array", "data array", "data text", "data null", "no id", "null id", "other id", "bad name", "deep", "many"],
)
def test_bad_merge_patches_are_refused_and_write_nothing(tab: Tab, db: redis.Redis, patch: Any, status: int) -> None:
    tab.write("POST", "playerstate", name="Hero", level=1)
    before = stored(db, tab)
    if isinstance(patch, dict) and isinstance(patch["playerData"], dict) and patch["playerData"].get("id") == "{me}":
        patch = {"playerData": {**patch["playerData"], "id": tab.id}}
    refused(tab.merge("playerstate", patch), status)
    assert stored(db, tab) == before


@pytest.mark.parametrize("grows", ["values", "bytes"])
def test_a_merge_patch_that_grows_the_save_past_its_limits_is_413(tab: Tab, db: redis.Redis, grows: str) -> None:
    settings = Settings()
    half: dict[str, Any]
    more: dict[str, Any]
    if grows == "values":  # each part within the limit, together past it
        half = {"a": list(range(settings.max_json_values // 2 + 10))}
        more = {"b": list(range(settings.max_json_values // 2 + 10))}
    else:
        half = {"a": "x" * (settings.max_body_bytes * 2 // 3)}
        more = {"b": "y" * (settings.max_body_bytes * 2 // 3)}
    assert tab.write("POST", "playerstate", **half).status_code == 200
    before = stored(db, tab)
    ttl = db.ttl(keys.player(tab.id))
    message = refused(tab.merge("playerstate", {"playerData": {"id": tab.id, **more}}), 413)
    assert "limits" in message
    assert stored(db, tab) == before
    assert 0 < db.ttl(keys.player(tab.id)) <= ttl  # restored as it was, expiry included
    # A patch that keeps within them still applies.
    assert tab.merge("playerstate", {"playerData": {"id": tab.id, "b": 1}}).status_code == 200


def test_merge_patches_only_on_patch(tab: Tab, db: redis.Redis) -> None:
    answer = tab.http.post("/api/playerstate", content=orjson.dumps(tab.body("playerstate", level=1)), headers=MERGE)
    refused(answer, 415)
    assert stored(db, tab) == (None, None)
