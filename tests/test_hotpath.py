"""The hot path (services/gateway/hotpath.py) answers exactly as the FastAPI routes do.

A second gateway with HOT_PATH=false shares the stack's Redis, workers and session secret. Every
request goes to both with the same cookie; the status, the body, the content type and the cookie
must match, valid requests and broken ones alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from devtools.stack import Stack
from services.gateway import leaderboard, saves
from services.gateway.app import create_app
from services.gateway.hotpath import HotPath
from services.gateway.observe import Observe
from services.gateway.paths import ExpressPaths, without_slash
from shared.settings import Settings
from tests.conftest import Player, spawn_fastapi_gateway

BOARD = "leaderboards:survivor-Grassland"


@pytest.fixture(scope="module")
def fastapi_only(stack: Stack) -> Iterator[str]:
    yield spawn_fastapi_gateway(stack)
    stack.stop("gateway-fastapi-only")


def both(stack: Stack, fastapi_only: str, player: Player, method: str, path: str, **request: Any) -> httpx.Response:
    """The hot gateway's answer, after checking the FastAPI-only gateway gives the same one."""
    cookies = dict(player.http.cookies)
    answers = []
    for base in (stack.url, fastapi_only):
        with httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
            answers.append(client.request(method, path, **request))
    hot, full = answers
    assert (hot.status_code, hot.headers["content-type"]) == (full.status_code, full.headers["content-type"])
    assert hot.content == full.content, (hot.text, full.text)
    assert hot.headers.get("retry-after") == full.headers.get("retry-after")
    assert hot.headers.get("set-cookie") == full.headers.get("set-cookie")
    return hot


def save_body(player: Player, **document: Any) -> dict[str, Any]:
    return {"playerData": {"name": "Hero", **document, "id": document.get("id", player.id)}}


@pytest.mark.parametrize("slash", ["", "/"], ids=["bare", "slashed"])
def test_reads_and_saves_answer_alike(stack: Stack, fastapi_only: str, player: Player, slash: str) -> None:
    me = f"/api/playerstate/{player.id}{slash}"
    saves = f"/api/playerstate{slash}"
    assert both(stack, fastapi_only, player, "GET", me).status_code == 404
    assert both(stack, fastapi_only, player, "PATCH", saves, json=save_body(player)).status_code == 404
    assert both(stack, fastapi_only, player, "POST", saves, json=save_body(player)).status_code == 200
    document = save_body(player, pos={"x": 1.5, "y": -2}, skills=["dash"])
    assert both(stack, fastapi_only, player, "PATCH", saves, json=document).status_code == 200
    # The stored text, not just its value: `id` comes first whichever gateway wrote it.
    stored = both(stack, fastapi_only, player, "GET", me)
    assert stored.text.startswith(f'{{"id":"{player.id}"')
    assert both(stack, fastapi_only, player, "HEAD", me).content == b""
    assert both(stack, fastapi_only, player, "GET", f"/api/gamestate/{player.id}{slash}").status_code == 404
    assert both(stack, fastapi_only, player, "GET", f"/api/playerstate/someoneelse{slash}").status_code == 403


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"playerData": {"id": "someoneelse"}}, {}, 403),
        ({"playerData": {"id": "not-an-id!"}}, {}, 400),
        ({"playerData": {"id": 7}}, {}, 400),
        ({"playerData": []}, {}, 400),
        ([], {}, 400),
        (b'{"playerData": {"id": "x"', {"content-type": "application/json"}, 400),
        (b'{"playerData": {"id": NaN}}', {"content-type": "application/json"}, 400),
        ("same", {"content-type": "text/plain"}, 415),
        ("same", {"content-type": ""}, 415),
        ("same", {}, 415),
        ("deep", {}, 400),
        ("my id and a newline", {}, 400),
    ],
)
def test_broken_saves_answer_alike(
    stack: Stack, fastapi_only: str, player: Player, body: Any, headers: dict[str, str], status: int
) -> None:
    if body == "same":
        body = json.dumps(save_body(player)).encode()
    elif body == "my id and a newline":
        body = {"playerData": {"id": f"{player.id}\n"}}
    elif body == "deep":
        nested: dict[str, Any] = {}
        for _ in range(40):
            nested = {"down": nested}
        body = save_body(player, nested=nested)
    request = {"content": body} if isinstance(body, bytes) else {"json": body}
    for path in ("/api/playerstate", "/api/playerstate/"):
        answer = both(stack, fastapi_only, player, "PATCH", path, headers=headers, **request)
        assert answer.status_code == status


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": BOARD, "score": 1200, "member": "Hero-{me}"}, 200),
        ({"key": BOARD, "score": 12.5, "member": "Hero-{me}"}, 200),
        ({"key": "leaderboards:survivor-Moon", "score": 1, "member": "Hero-{me}"}, 400),
        ({"key": BOARD, "score": 1, "member": "Hero-someoneelse"}, 403),
        ({"key": BOARD, "score": 1, "member": "Bad Name-{me}"}, 400),
        ({"key": BOARD, "score": 1, "member": "Hero\n-{me}"}, 400),
        ({"key": BOARD, "score": -1, "member": "Hero-{me}"}, 400),
        ({"key": BOARD, "score": "12", "member": "Hero-{me}"}, 400),
        ({"key": BOARD, "score": True, "member": "Hero-{me}"}, 400),
        ({"key": BOARD, "score": 2**53 + 1, "member": "Hero-{me}"}, 400),
        ({"key": BOARD, "score": 1, "member": "x" * 201}, 400),
        ({"key": BOARD, "member": "Hero-{me}"}, 400),
    ],
)
def test_scores_answer_alike(
    stack: Stack, fastapi_only: str, player: Player, body: dict[str, Any], status: int | None
) -> None:
    body = {k: v.replace("{me}", player.id) if isinstance(v, str) else v for k, v in body.items()}
    player.http.post("/api/leaderboard", json=body)  # so both gateways find it recorded already
    for path in ("/api/leaderboard", "/api/leaderboard/"):
        answer = both(stack, fastapi_only, player, "POST", path, json=body)
        assert answer.status_code == status


@pytest.mark.parametrize(
    "path",
    [
        f"/api/leaderboard/{BOARD}",
        f"/api/leaderboard/{BOARD}?count=3",
        f"/api/leaderboard/{BOARD}/?count=3",
        f"/api/leaderboard/{BOARD}/",
        f"/api/leaderboard/{BOARD}?count=0",
        f"/api/leaderboard/{BOARD}?count=abc",
        f"/api/leaderboard/{BOARD}?count=3&count=4",
        "/api/leaderboard/leaderboards:survivor-Empty",
        "/api/leaderboard/players:secret",
    ],
)
def test_top_scores_answer_alike(stack: Stack, fastapi_only: str, player: Player, path: str) -> None:
    player.http.post("/api/leaderboard", json={"key": BOARD, "score": 50, "member": f"Top-{player.id}"})
    both(stack, fastapi_only, player, "GET", path)


@pytest.mark.parametrize(
    "path", [f"/api/leaderboard/{BOARD}", f"/api/leaderboard/{BOARD}?count=0", "/api/leaderboard/x"]
)
def test_a_reader_without_a_cookie_gets_the_top_on_the_fast_path(
    stack: Stack, fastapi_only: str, player: Player, path: str
) -> None:
    """No session to refresh, so the fast path answers a page to a reader who sends no cookie, without
    a Set-Cookie, as FastAPI's path does."""
    player.http.post("/api/leaderboard", json={"key": BOARD, "score": 50, "member": f"Top-{player.id}"})
    answers = []
    for base in (stack.url, fastapi_only):
        with httpx.Client(base_url=base, timeout=30) as client:
            answer = client.get(path)
            answers.append((answer.status_code, answer.headers["content-type"], answer.content))
            assert "set-cookie" not in answer.headers
    assert answers[0] == answers[1]
    hot = create_app(Settings(redis_url=stack.redis_url))
    assert isinstance(hot, HotPath)
    found = hot.find({"type": "http", "method": "GET", "path": f"/api/leaderboard/{BOARD}", "root_path": ""})
    assert found is not None and found[0].cookieless


MERGE = {"content-type": "application/merge-patch+json"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("PATCH", "/api/playerstate", "mine", {"if-match": "nope"}, 400),
        ("PATCH", "/api/playerstate", "mine", {"if-match": 'W/"1-0"'}, 412),
        ("POST", "/api/playerstate", "mine", {"if-none-match": '"1-0"'}, 400),
        ("PATCH", "/api/playerstate", "mine", {**MERGE, "if-match": '"1-0"', "if-none-match": "*"}, 400),
        ("PATCH", "/api/playerstate", {"playerData": [1]}, MERGE, 400),
        ("PATCH", "/api/playerstate", {"playerData": {"id": None}}, MERGE, 400),
        ("PATCH", "/api/playerstate", {"playerData": {"id": "someoneelse"}}, MERGE, 403),
        ("PATCH", "/api/gamestate", "mine", MERGE, 404),
        ("POST", "/api/playerstate", "mine", MERGE, 415),
        ("DELETE", "/api/gamestate/{me}", None, {}, 404),
        ("DELETE", "/api/playerstate/someoneelse", None, {}, 403),
        ("DELETE", "/api/playerstate/{me}", None, {"if-match": "nope"}, 400),
        ("GET", "/api/playerstate/{me}", None, {"if-none-match": "nope"}, 400),
    ],
)
def test_preconditions_merges_and_deletes_answer_alike(
    stack: Stack, fastapi_only: str, player: Player, method: str, path: str, body: Any, headers: dict[str, str],
    status: int,
) -> None:  # fmt: skip
    if body == "mine":
        body = {("gameData" if "gamestate" in path else "playerData"): {"id": player.id}}
    content = None if body is None else json.dumps(body).encode()
    request = {"headers": {"content-type": "application/json", **headers}, "content": content}
    answer = both(stack, fastapi_only, player, method, path.replace("{me}", player.id), **request)
    assert answer.status_code == status


@pytest.mark.parametrize("key", [BOARD, "leaderboards:survivor-Nowhere", "x" * 300])
def test_live_streams_answer_alike(stack: Stack, fastapi_only: str, key: str) -> None:
    """The live route is public on the fast path: with no session at all, the same headers and first
    event (or the same JSON refusal) from both gateways."""
    answers = []
    for base in (stack.url, fastapi_only):
        with (
            httpx.Client(base_url=base, timeout=30) as client,
            client.stream("GET", f"/api/leaderboard/{key}/live") as answer,
        ):
            first = next(answer.iter_raw()) if answer.status_code == 200 else answer.read()
            headers = {name: answer.headers.get(name) for name in ("content-type", "cache-control", "set-cookie")}
            answers.append((answer.status_code, headers, first))
    hot, full = answers
    assert hot == full
    assert hot[0] == 200 if key == BOARD else hot[0] == 400
    assert hot[2].startswith(b"event: top\ndata: [") if key == BOARD else b'"status":400' in hot[2]


def test_only_the_hot_routes_are_served_before_fastapi(redis_url: str) -> None:
    hot = create_app(Settings(redis_url=redis_url))
    assert isinstance(hot, HotPath)
    assert isinstance(hot.fallback, ExpressPaths) and isinstance(hot.fallback.app, Observe)
    for method, path in [
        ("GET", "/api/playerstate/abc"),
        ("GET", "/api/gamestate/abc"),
        ("GET", f"/api/leaderboard/{BOARD}"),
        ("PATCH", "/api/playerstate"),
        ("POST", "/api/gamestate"),
        ("POST", "/api/leaderboard"),
        ("GET", f"/api/leaderboard/{BOARD}/live"),
        ("POST", "/api/playerstate/"),  # the seed's client saves with the slash
        ("GET", "/api/playerstate/abc/"),
    ]:
        assert served(hot, method, path), (method, path)
    for method, path in [
        ("GET", "/api/playerstate/search"),
        ("GET", "/api/playerstate/"),
        ("GET", "/session"),
        ("DELETE", "/api/playerstate"),
        ("PUT", "/api/playerstate"),
        ("GET", "/api/playerstate/a/b"),
        ("HEAD", "/api/playerstate/abc"),
        ("GET", "/"),
    ]:
        assert not served(hot, method, path), (method, path)
    plain = create_app(Settings(redis_url=redis_url, hot_path=False))
    assert isinstance(plain, ExpressPaths) and isinstance(plain.app, Observe)
    assert not isinstance(plain.app.app, HotPath)


def test_a_new_route_is_never_taken_for_a_fast_one(redis_url: str) -> None:
    """The fast path matches FastAPI's own routes in FastAPI's order: a route declared before a fast
    one wins on both paths (once, a route added under /api/playerstate/ would have been read as a save)."""
    extra = APIRouter()

    @extra.get("/api/playerstate/export")
    async def export() -> dict[str, str]:
        return {}

    hot = HotPath(FastAPI(), FastAPI(), [*extra.routes, *saves.router.routes], Settings(redis_url=redis_url), None)
    assert not served(hot, "GET", "/api/playerstate/export")
    assert served(hot, "GET", "/api/playerstate/abc")
    assert served(hot, "PATCH", "/api/playerstate")


def served(hot: HotPath, method: str, path: str) -> bool:
    return hot.find({"type": "http", "method": method, "path": path, "root_path": ""}) is not None


TRICKY_PATHS = [
    *(
        f"/api/leaderboard/{key}{suffix}"
        for key in ("k", "", "a/b", "k\n", "ä", "k%2Fx")
        for suffix in ("", "/me", "/live", "/seasons")
    ),
    "/api/leaderboard/k/me/",
    "/api/leaderboard/k/mee",
    "/api/leaderboard/kme",
    "/api/leaderboard/k/me\n",
    "/api/playerstate/abc",
    "/api/playerstate/",
    "/api/playerstate/a/b",
    "/api/playerstate/abc\n",
    "/api/gamestate/q",
]


def test_the_fast_match_agrees_with_starlettes_compiled_paths(redis_url: str) -> None:
    """The fast path matches `literal{param}suffix` without the regex: the same parameters, or no
    match, as the route's own `matches` gives, for every route it tries."""
    hot = create_app(Settings(redis_url=redis_url))
    assert isinstance(hot, HotPath)
    tried = 0
    for sections, _ in hot.table.values():
        for candidate in {id(c): c for listed in sections.values() for c in listed}.values():
            for path in TRICKY_PATHS:
                if not path.startswith(candidate.literal):
                    continue
                expected = route_params(candidate.route, path)
                assert candidate.params(path) == expected, (candidate.route.path, path)
                tried += 1
    assert tried > 50
    assert any(candidate.suffix == "/me" and candidate.param for candidate in hot.table["GET"][0]["/api/leaderboard"])


def test_a_request_tries_only_its_sections_routes_and_finds_what_trying_them_all_would(redis_url: str) -> None:
    """Filed by their first two segments, routes are found as FastAPI's order finds them, with routes
    whose parameter is within those segments (tried for every section) among them."""
    extra = APIRouter()

    @extra.get("/api/{anything:path}/export")
    async def export() -> dict[str, str]:
        return {}

    @extra.get("/x/{name}")
    async def x() -> dict[str, str]:
        return {}

    for routes in ([*saves.router.routes, *leaderboard.router.routes], [*extra.routes, *saves.router.routes]):
        hot = HotPath(FastAPI(), FastAPI(), routes, Settings(redis_url=redis_url), None)
        paths = [
            *TRICKY_PATHS, "/api/playerstate/export", "/api/playerstate/abc/export", "/x/y", "/x", "/", "/api",
            "/api/", "/api/playerstate", "/api/playerstate\n", "/api/leaderboard", "/api/leaderboard/",
        ]  # fmt: skip
        for method in ("GET", "PATCH", "POST", "DELETE"):
            for path in paths:
                found = hot.find({"type": "http", "method": method, "path": path, "root_path": ""})
                expected = first_fast_route(routes, method, path)
                if found is not None:
                    assert found[0].route is expected, (method, path)
                else:  # FastAPI answers: the same, more slowly; only for a path its `$` stretches
                    assert expected is None or path.endswith("\n"), (method, path)


def first_fast_route(routes: list[BaseRoute], method: str, path: str) -> BaseRoute | None:
    """The route Starlette's router would pick, when it has a fast handler: every route tried in order."""
    path = without_slash(path)
    for route in routes:
        if isinstance(route, APIRoute) and method in (route.methods or ()) and route_params(route, path) is not None:
            return route if getattr(route.endpoint, "fast", None) else None
    return None


def route_params(route: APIRoute, path: str) -> dict[str, Any] | None:
    """The path parameters Starlette's own matching finds for `path` on `route`, whatever the method."""
    method = next(iter(route.methods or {"GET"}))
    match, child = route.matches({"type": "http", "method": method, "path": path, "root_path": ""})
    return None if match is Match.NONE else dict(child["path_params"])
