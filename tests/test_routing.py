"""One definition per route (services/gateway/routing.py), one order of layers (app.py's `layers`).

Every API route is a record: what it serves and what the OpenAPI document shows come from it, and
it answers in the words the FastAPI routes it replaced used, which clients may already match on.
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from devtools.stack import Stack
from services.gateway.app import ROUTES, create_app, layers
from services.gateway.layers import BodyLimit, Call, ExpressPaths, Gateway, RequestIds
from services.gateway.models import ID_PATTERN
from services.gateway.responses import json_response
from services.gateway.routing import Route, Router, openapi_routes
from services.gateway.sessions import Sessions
from shared.settings import Settings
from tests.conftest import Player

BOARD = "leaderboards:survivor-Grassland"


def openapi(redis_url: str) -> dict[str, Any]:
    app = create_app(Settings(redis_url=redis_url, api_docs=True))
    document: dict[str, Any] = app.app.openapi()  # type: ignore[attr-defined]
    return document


def test_every_documented_operation_is_a_record_and_every_record_is_documented(redis_url: str) -> None:
    documented = {
        (method.upper(), path) for path, operations in openapi(redis_url)["paths"].items() for method in operations
    }
    records = {(route.method, route.path) for route in ROUTES if route.in_schema}
    assert documented == records
    assert len(records) == len([route for route in ROUTES if route.in_schema])  # no route declared twice
    assert [route.path for route in ROUTES if not route.in_schema] == ["/metrics"]


def test_the_layers_are_one_list_in_their_order(redis_url: str) -> None:
    kinds = [type(layer) for layer in layers(Settings(redis_url=redis_url))]
    assert kinds == [ExpressPaths, RequestIds, BodyLimit, Sessions]
    gateway = create_app(Settings(redis_url=redis_url))
    assert isinstance(gateway, Gateway)
    # The answer's headers are added in the reverse order: the session's cookie, then the request id.
    assert [type(getattr(hook, "__self__", None)) for hook in gateway.leaving] == [Sessions, RequestIds]


def test_a_layer_answers_in_its_place_in_the_order(stack: Stack, player: Player) -> None:
    """The body limit comes before the session (a 413 sets no cookie) and after the request id (the
    413 carries one); the path comes first (a trailing slash is no different)."""
    too_large = player.http.post(
        "/api/playerstate/", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert too_large.status_code == 413 and too_large.json()["status"] == 413
    assert "set-cookie" not in too_large.headers
    assert too_large.headers["x-request-id"]
    saved = player.http.post("/api/playerstate/", json={"playerData": {"id": player.id}})
    assert saved.status_code == 200 and "set-cookie" in saved.headers and saved.headers["x-request-id"]


def test_a_search_is_matched_before_the_document_it_could_be_taken_for() -> None:
    router = Router(ROUTES)
    found = router.find("GET", "/api/playerstate/search")
    assert found is not None and found[0].name == "search_players"
    found = router.find("GET", "/api/playerstate/abc")
    assert found is not None and (found[0].name, found[1]) == ("read_player", {"document_id": "abc"})
    assert router.find("GET", "/api/playerstate/a/b") is None
    assert router.find("PUT", "/api/playerstate") is None
    assert router.allowed("/api/playerstate") == ["PATCH", "POST"]
    assert router.allowed("/api/leaderboard/x") == ["GET", "HEAD"]


PATH_TEXT = st.text(alphabet=string.ascii_letters + "/\n:-_%.", max_size=30)


@given(middle=PATH_TEXT, tail=st.sampled_from(["", "/", "/me", "/live", "/me/", "\n"]))
def test_the_cheap_match_agrees_with_starlettes_compiled_path(middle: str, tail: str) -> None:
    """`Route.match` skips the regex for `literal{param}suffix`: it must find what the regex finds."""
    for route in ROUTES:
        for path in (route.literal + middle + tail, route.literal + middle + route.suffix + tail):
            found = route.regex.match(path)
            expected = None if found is None else found.groupdict()
            assert route.match(path) == expected, (route.path, path)


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "message"),
    [
        ("POST", "/api/playerstate", b"[]", {}, 400,
         "Input should be a valid dictionary or object to extract fields from"),
        ("POST", "/api/playerstate", b"", {}, 400, "Field required"),
        ("POST", "/api/playerstate", b"{", {}, 400, "Malformed JSON body"),
        ("POST", "/api/playerstate", b'{"playerData": {"id": 7}}', {}, 400,
         "playerData.id: Input should be a valid string"),
        ("POST", "/api/playerstate", b"{}", {"content-type": "text/plain"}, 415,
         "Send the body as JSON, with Content-Type: application/json"),
        ("PATCH", "/api/playerstate", b"{}", {"content-type": "text/plain"}, 415,
         "Send the body as JSON, with Content-Type: application/json or application/merge-patch+json"),
        ("GET", f"/api/leaderboard/{BOARD}?count=0", None, {}, 400,
         "query.count: Input should be greater than or equal to 1"),
        ("GET", f"/api/leaderboard/{BOARD}?count=abc&count=5", None, {}, 200, None),  # the last one counts
        ("GET", f"/api/leaderboard/{BOARD}/me?around=51", None, {}, 400,
         "query.around: Input should be less than or equal to 50"),
        ("GET", "/api/playerstate/search?name=a%20b", None, {}, 400,
         "query.name: String should match pattern '^[A-Za-z0-9_]{1,32}$'"),
        ("PUT", "/api/playerstate", b"{}", {}, 405, "PUT is not allowed here"),
    ],
)  # fmt: skip
def test_refusals_are_phrased_as_the_fastapi_routes_phrased_them(
    stack: Stack, player: Player, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int,
    message: str | None,
) -> None:  # fmt: skip
    player.http.post("/api/leaderboard", json={"key": BOARD, "score": 5, "member": f"Hero-{player.id}"})
    answer = player.http.request(method, path, content=body, headers={"content-type": "application/json", **headers})
    assert answer.status_code == status, answer.text
    if message is not None:
        assert answer.json() == {"status": status, "message": message}


def test_a_route_needing_a_session_refuses_before_it_validates(stack: Stack) -> None:
    answer = httpx.post(f"{stack.url}/api/playerstate", content=b"[]", headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["status"]) == (401, 401)
    wrong_type = httpx.post(f"{stack.url}/api/playerstate", content=b"[]", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415  # what the body is declared as comes first, as before


def test_head_on_the_live_stream_is_its_headers_alone(stack: Stack) -> None:
    answer = httpx.head(f"{stack.url}/api/leaderboard/{BOARD}/live", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.content == b""


def test_a_new_route_is_one_record(redis_url: str) -> None:
    """What adding a route takes: a record in the list; the router serves it, the docs show it."""

    async def hello(_call: Any) -> Any:
        """Says hello."""
        raise NotImplementedError

    extra = Route("GET", "/api/hello/{name}", hello, "hello", tags=("demo",))
    router = Router([extra, *ROUTES])
    assert router.find("GET", "/api/hello/you") == (extra, {"name": "you"})
    (documented,) = [route for route in openapi_routes([extra]) if route.path == "/api/hello/{name}"]
    assert documented.description == "Says hello." and documented.methods == {"GET"}


def call_of(path: str, params: dict[str, Any]) -> Call:
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    return Call(scope, receive_nothing, State(), 0.0, params=params)


async def receive_nothing() -> Any:
    raise AssertionError("a GET's body is never read")


def test_a_guard_refuses_before_a_path_parameter_is_checked() -> None:
    async def operators_only(_call: Call) -> None:
        raise HTTPException(401, "An operator's token is required")

    async def answer(_call: Call) -> Response:
        return json_response(200, {"ok": True})

    guarded = Route("GET", "/x/{id}", answer, "x", guard=operators_only, patterns={"id": ID_PATTERN})
    with pytest.raises(HTTPException) as refused:
        asyncio.run(guarded.serve(call_of("/x/not-an-id!", {"id": "not-an-id!"})))
    assert refused.value.status_code == 401
    open_route = Route("GET", "/x/{id}", answer, "x", patterns={"id": ID_PATTERN})
    wrong = asyncio.run(open_route.serve(call_of("/x/not-an-id!", {"id": "not-an-id!"})))
    assert wrong.status_code == 400
    assert orjson.loads(wrong.body) == {
        "status": 400,
        "message": f"path.id: String should match pattern '{ID_PATTERN}'",
    }
    assert asyncio.run(open_route.serve(call_of("/x/abc", {"id": "abc"}))).status_code == 200


def test_every_route_answers_alike_with_and_without_a_trailing_slash(stack: Stack) -> None:
    """Derived from the records, so a new route is covered: the seed's client may add the slash to any
    path. (The live stream never ends; tests/test_live.py sends it both ways.)"""
    checked = 0
    for route in ROUTES:
        if route.response_class is not JSONResponse:
            continue
        path = route.path.format(key=BOARD, document_id="nobody")
        bare, slashed = (httpx.request(route.method, f"{stack.url}{path}{slash}", timeout=10) for slash in ("", "/"))
        assert bare.status_code == slashed.status_code != 405, (route.method, path)
        assert bare.headers["content-type"] == slashed.headers["content-type"], (route.method, path)
        checked += 1
    assert checked == len(ROUTES) - 1
