"""What clients written for the seed's server send, replayed request by request, URLs as they spell them.

The seed's game client (../shared/seed: "POST to api/playerstate/") builds its write URLs with a
trailing slash, and Express answers `/api/playerstate` and `/api/playerstate/` alike, `HEAD` like
`GET`. Each flow runs with both spellings and is checked in its answers and in the Redis keys it
leaves. Beside it: curl as people type it (no cookie until the first answer) and a game engine's
HTTP client, which sends only what it is told to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from devtools.stack import Stack

BOARD = "leaderboards:survivor-Grassland"
SLASHES = pytest.mark.parametrize("slash", ["", "/"], ids=["bare", "slashed"])
# What a browser's fetch() adds to a same-origin request of the seed's client.
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Accept": "*/*",
    "Accept-Language": "en-GB,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
}
CURL_HEADERS = {"User-Agent": "curl/7.88.1", "Accept": "*/*"}


@pytest.fixture
def store(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def stored(store: redis.Redis, key: str) -> Any:
    raw = store.execute_command("JSON.GET", key)
    return None if raw is None else orjson.loads(raw)


def seed_client(stack: Stack) -> httpx.Client:
    """The seed's client in a browser tab: fetch() with its JSON bodies, same-origin, cookies kept."""
    origin = stack.url
    return httpx.Client(base_url=origin, headers={**BROWSER_HEADERS, "Referer": f"{origin}/"}, timeout=30)


def write(client: httpx.Client, method: str, url: str, body: dict[str, Any]) -> httpx.Response:
    """A write as the seed's client sends it: JSON text, `Content-Type: application/json`, and Origin."""
    headers = {"Content-Type": "application/json", "Origin": str(client.base_url).rstrip("/")}
    return client.request(method, url, content=orjson.dumps(body), headers=headers)


def save(client: httpx.Client, url: str, body: dict[str, Any]) -> httpx.Response:
    """The seed's save flow: PATCH; on 404, POST."""
    answer = write(client, "PATCH", url, body)
    return write(client, "POST", url, body) if answer.status_code == 404 else answer


@SLASHES
def test_a_new_player_saves_reloads_and_posts_a_score(stack: Stack, store: redis.Redis, slash: str) -> None:
    with seed_client(stack) as client:
        me = client.get("/session").json()["id"]
        assert client.get(f"/api/playerstate/{me}").json() == {"status": 404, "message": "Not Found"}
        assert client.get(f"/api/gamestate/{me}").status_code == 404

        # A new player: the client knows there is no save yet and creates both.
        player = {"id": me, "name": "Link", "health": {"dungeon": 100}, "skillUnlocked": {"swordBeam": False}}
        game = {"id": me, "map": "Grassland", "chapter": 1}
        created = write(client, "POST", f"/api/playerstate{slash}", {"playerData": player})
        assert (created.status_code, created.json()) == (200, {"status": 200, "message": "Player created"})
        created = write(client, "POST", f"/api/gamestate{slash}", {"gameData": game})
        assert (created.status_code, created.json()) == (200, {"status": 200, "message": "Game created"})
        assert stored(store, f"players:{me}") == player
        assert stored(store, f"games:{me}") == game

        # A checkpoint: PATCH the same URLs.
        player["health"]["dungeon"] = 80
        updated = save(client, f"/api/playerstate{slash}", {"playerData": player})
        assert (updated.status_code, updated.json()) == (200, {"status": 200, "message": "Player updated"})
        game["chapter"] = 2
        updated = save(client, f"/api/gamestate{slash}", {"gameData": game})
        assert (updated.status_code, updated.json()) == (200, {"status": 200, "message": "Game updated"})

        # A reload: the save comes back as stored, both spellings of the read.
        for path in (f"/api/playerstate/{me}", f"/api/playerstate/{me}/"):
            assert client.get(path).json() == player
        assert client.get(f"/api/gamestate/{me}{slash}").json() == game

        # A survivor death with a personal best.
        score = {"key": BOARD, "score": 1200, "member": f"Link-{me}"}
        posted = write(client, "POST", f"/api/leaderboard{slash}", score)
        assert (posted.status_code, posted.json()["status"]) == (200, 200)
        assert store.zscore(BOARD, f"Link-{me}") == 1200
        top = client.get(f"/api/leaderboard/{BOARD}{slash}?count=10")
        assert top.status_code == 200
        # The seed's fields, as its client reads them; each entry carries its rank besides.
        assert {"value": f"Link-{me}", "score": 1200} in [
            {"value": e["value"], "score": e["score"]} for e in top.json()
        ]
        assert [entry["rank"] for entry in top.json()] == list(range(1, len(top.json()) + 1))


@SLASHES
def test_the_fallback_post_after_a_patch_404(stack: Stack, store: redis.Redis, slash: str) -> None:
    """A returning client that lost its save: PATCH is 404, and the POST it falls back to creates it."""
    with seed_client(stack) as client:
        me = client.get("/session").json()["id"]
        body = {"playerData": {"id": me, "name": "Zelda"}}
        first = write(client, "PATCH", f"/api/playerstate{slash}", body)
        assert (first.status_code, first.json()) == (404, {"status": 404, "message": "Not Found"})
        assert save(client, f"/api/playerstate{slash}", body).json()["message"] == "Player created"
        assert stored(store, f"players:{me}") == body["playerData"]


@SLASHES
def test_every_route_answers_alike_with_and_without_the_slash(stack: Stack, slash: str) -> None:
    with seed_client(stack) as client:
        me = client.get(f"/session{slash}").json()["id"]
        assert client.get(f"/healthz{slash}").status_code == 200
        search = client.get(f"/api/playerstate/search{slash}", params={"id": me})
        assert (search.status_code, search.json()) == (200, {"total": 0, "documents": []})
        assert client.get(f"/api/gamestate/search{slash}", params={"id": me}).status_code == 200
        empty = client.get(f"/api/leaderboard/leaderboards:survivor-Empty{slash}")
        assert (empty.status_code, empty.json()) == (404, {"status": 404, "message": "No leaderboard entries found"})
        # Nothing redirects: the slashed form is answered where it was asked.
        answers = [client.get(f"/api/playerstate/{me}{slash}"), client.post(f"/api/playerstate{slash}", json=[])]
        assert [answer.status_code for answer in answers] == [404, 400]


def test_head_answers_as_get_without_a_body(stack: Stack) -> None:
    """Express answers HEAD like GET, and load balancers probe with it."""
    with seed_client(stack) as client:
        me = client.get("/session").json()["id"]
        for path, status in [("/healthz", 200), ("/session", 200), (f"/api/playerstate/{me}", 404), ("/", 200)]:
            head, get = client.head(path), client.get(path)
            assert (head.status_code, head.content) == (status, b""), path
            assert get.status_code == status, path
            assert head.headers["content-type"] == get.headers["content-type"], path


def test_unknown_api_paths_are_json_404_for_every_method(stack: Stack) -> None:
    with seed_client(stack) as client:
        client.get("/session")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            for path in ("/api/nothing", "/api/nothing/", "/api/playerstate/a/b", "/api", "/api/"):
                answer = client.request(method, path)
                assert answer.status_code == 404, (method, path)
                assert answer.json()["status"] == 404, (method, path)


def test_known_paths_with_another_method_are_json_405_with_allow(stack: Stack) -> None:
    with seed_client(stack) as client:
        client.get("/session")
        for method, path, allow in [
            ("PUT", "/api/playerstate/", "PATCH, POST"),
            ("DELETE", "/api/leaderboard", "POST"),
            ("POST", "/healthz", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"),
            ("DELETE", "/index.html", "GET, HEAD"),
        ]:
            answer = client.request(method, path)
            assert (answer.status_code, answer.json()["status"]) == (405, 405), (method, path)
            assert answer.headers["allow"] == allow, (method, path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_other_methods_on_session_create_no_session(stack: Stack, store: redis.Redis, method: str) -> None:
    before = len(store.keys("sessions:*"))
    answer = httpx.request(method, f"{stack.url}/session")
    assert answer.status_code == 405
    assert "set-cookie" not in answer.headers
    assert len(store.keys("sessions:*")) == before


@SLASHES
def test_curl_as_people_type_it(stack: Stack, store: redis.Redis, slash: str) -> None:
    """`curl -c jar -b jar`: no Origin, no cookie until the first answer; `--json` sets both JSON headers."""
    with httpx.Client(base_url=stack.url, headers=CURL_HEADERS, timeout=30) as curl:
        me = curl.get("/session").json()["id"]
        as_json = {"Content-Type": "application/json", "Accept": "application/json"}
        body = orjson.dumps({"playerData": {"id": me, "name": "Curl"}})
        answer = curl.post(f"/api/playerstate{slash}", content=body, headers=as_json)
        assert (answer.status_code, answer.json()["message"]) == (200, "Player created")
        assert stored(store, f"players:{me}") == {"id": me, "name": "Curl"}
        # `curl -d` without `-H`: a form, not JSON; told so, and nothing stored.
        form = curl.patch(
            f"/api/playerstate{slash}",
            content=orjson.dumps({"playerData": {"id": me, "name": "Form"}}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (form.status_code, form.json()["status"]) == (415, 415)
        assert "application/json" in form.json()["message"]
        assert stored(store, f"players:{me}")["name"] == "Curl"


@SLASHES
def test_a_game_engine_client_that_sends_only_what_it_is_told(stack: Stack, store: redis.Redis, slash: str) -> None:
    """As Godot's HTTPRequest or Unity's UnityWebRequest send: no Accept, no Origin, the cookie set by hand."""
    with httpx.Client(base_url=stack.url, timeout=30) as engine:
        session = engine.get("/session")
        me = session.json()["id"]
        cookie = session.headers["set-cookie"].split(";")[0]
        engine.cookies.clear()
        headers = {"Content-Type": "application/json; charset=utf-8", "Cookie": cookie}
        body = orjson.dumps({"gameData": {"id": me, "level": 3}})
        answer = engine.post(f"/api/gamestate{slash}", content=body, headers=headers)
        assert (answer.status_code, answer.json()["message"]) == (200, "Game created")
        assert engine.get(f"/api/gamestate/{me}{slash}", headers={"Cookie": cookie}).json() == {"id": me, "level": 3}
        # Without its Content-Type the same body is refused, not guessed at.
        bare = engine.post(f"/api/gamestate{slash}", content=body, headers={"Cookie": cookie})
        assert (bare.status_code, bare.json()["status"]) == (415, 415)


@pytest.mark.parametrize("score", ["12", True, False, None, 2**53 + 1, 1e300, [12], {"n": 12}])
@SLASHES
def test_a_score_that_is_not_a_plain_number_is_400(stack: Stack, store: redis.Redis, score: Any, slash: str) -> None:
    with seed_client(stack) as client:
        me = client.get("/session").json()["id"]
        body = {"key": "leaderboards:survivor-Scores", "score": score, "member": f"Odd-{me}"}
        answer = write(client, "POST", f"/api/leaderboard{slash}", body)
        assert (answer.status_code, answer.json()["status"]) == (400, 400), score
        assert store.zscore("leaderboards:survivor-Scores", f"Odd-{me}") is None
