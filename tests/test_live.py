"""`GET /api/leaderboard/{key}/live`: the top 10 as server-sent events, on real processes.

The module's stack trusts X-Forwarded-For from 127.0.0.1, so listeners can come from several
addresses, and has short clocks: heartbeats every 0.2 s, connection timeouts of 1 s (which must not
cut a stream), a worker sweep every 3 s (which re-announces what a dead worker missed).
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from devtools import redis_stack
from devtools.stack import Stack
from shared import keys
from tests.conftest import ARTIFACTS, Player, StackFactory, eventually, free_port, fresh_redis, started

MAPS = "Grassland,LiveA,LiveB,LiveC,LiveD,LiveE,LiveF,LiveG,LiveH"
SETTINGS = {
    "LEADERBOARD_MAPS": MAPS,
    "FORWARDED_ALLOW_IPS": "127.0.0.1",
    "LIVE_HEARTBEAT_S": "0.2",
    "LIVE_MAX_PER_ADDRESS": "3",
    "LIVE_MAX_LISTENERS": "6",
    "HEAD_TIMEOUT_S": "1",
    "BODY_TIMEOUT_S": "1",
    "KEEP_ALIVE_S": "1",
    "REQUEST_TIMEOUT_MS": "5000",
    "CLAIM_IDLE_MS": "6000",
}
WAIT_S = 15  # for an event that should come: far more than it takes


def board(name: str) -> str:
    return keys.leaderboard(name)


class Listener:
    """One event stream, read on a thread of its own: its events in a queue, its heartbeats counted."""

    def __init__(self, base_url: str, key: str, address: str = "10.0.0.1") -> None:
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30))
        request = self.client.build_request("GET", f"/api/leaderboard/{key}/live", headers={"X-Forwarded-For": address})
        self.response = self.client.send(request, stream=True)
        self.events: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.heartbeats = 0
        self.ended_cleanly: bool | None = None  # set when the stream ends: by the server's clean close or not
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind = ""
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.heartbeats += 1
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.events.put((kind, orjson.loads(line.removeprefix("data: "))))
            self.ended_cleanly = True
        except (httpx.HTTPError, ValueError, AttributeError):  # closed under the reader (ValueError, AttributeError)
            self.ended_cleanly = False
        self.events.put(None)

    def next_top(self) -> list[dict[str, Any]]:
        item = self.events.get(timeout=WAIT_S)
        assert item is not None, "the stream ended"
        kind, data = item
        assert kind == "top"
        assert isinstance(data, list)
        return data

    def close(self) -> None:
        self.response.close()
        self.client.close()


@pytest.fixture(scope="module")
def live_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the module's own: its workers know boards the session's stack does not, and would
    dead-letter the scores those workers took from the shared command stream."""
    with fresh_redis(tmp_path_factory.mktemp("live-redis")) as url:
        yield url


@pytest.fixture(scope="module")
def live_stack(live_redis: str) -> Iterator[Stack]:
    with started(live_redis, ARTIFACTS / "logs/live_stack.log", 1, 1, **SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def db(live_redis: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(live_redis) as client:
        yield client


@pytest.fixture
def listeners(live_stack: Stack) -> Iterator[list[Listener]]:
    """Listeners opened by the test, all closed after it."""
    opened: list[Listener] = []
    yield opened
    for listener in opened:
        listener.close()
    eventually(lambda: live_listeners(live_stack) == 0, WAIT_S, "every listener released")


def listen(stack: Stack, opened: list[Listener], key: str, address: str = "10.0.0.1") -> Listener:
    listener = Listener(stack.url, key, address)
    opened.append(listener)
    return listener


def post(player: Player, key: str, score: float, name: str = "Hero") -> str:
    member = f"{name}-{player.id}"
    answer = player.http.post("/api/leaderboard", json={"key": key, "score": score, "member": member})
    assert answer.status_code == 200, answer.text
    return member


def live_listeners(stack: Stack) -> float:
    text = httpx.get(f"{stack.url}/metrics").text
    found = re.search(r"^cachequest_live_listeners (\S+)$", text, re.MULTILINE)
    assert found, "the gauge is exposed"
    return float(found[1])


def test_the_top_comes_at_once_then_at_each_new_leader(live_stack: Stack, listeners: list[Listener]) -> None:
    key = board("LiveA")
    first, second = Player(live_stack.url), Player(live_stack.url)
    listener = listen(live_stack, listeners, key)
    assert listener.response.status_code == 200
    assert listener.response.headers["content-type"].startswith("text/event-stream")
    assert listener.next_top() == []  # an empty board: its top at once all the same

    leader = post(first, key, 100)
    assert listener.next_top() == [{"value": leader, "score": 100, "rank": 1}]
    new_leader = post(second, key, 250.5)
    assert listener.next_top() == [
        {"value": new_leader, "score": 250.5, "rank": 1},
        {"value": leader, "score": 100, "rank": 2},
    ]
    late = listen(live_stack, listeners, key, "10.0.0.2")  # a listener who comes later: the top at once
    assert [entry["value"] for entry in late.next_top()] == [new_leader, leader]


def test_a_score_outside_the_top_10_sends_nothing(
    live_stack: Stack, listeners: list[Listener], db: redis.Redis
) -> None:
    key = board("LiveB")
    players = [Player(live_stack.url) for _ in range(12)]
    listener = listen(live_stack, listeners, key)
    assert listener.next_top() == []
    for score, player in enumerate(players[:10], start=1):
        post(player, key, score * 100)
    while len(top := listener.next_top()) < 10:  # one event per score, or fewer if they came in one batch
        pass
    assert [entry["score"] for entry in top] == [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]
    announced = db.xlen(keys.live_top(key))

    post(players[10], key, 50)  # 11th: the top 10 is unchanged
    post(players[10], key, 60)  # a new personal best, still 11th
    post(players[0], key, 99)  # not higher than that player's 100: not even applied
    leader = post(players[11], key, 5000)  # the worker settles in order: this comes after those
    after = listener.next_top()
    assert after[0] == {"value": leader, "score": 5000, "rank": 1}, "no event came in between"
    assert [entry["rank"] for entry in after] == list(range(1, 11))
    assert db.xlen(keys.live_top(key)) == announced + 1


def test_every_listener_gets_each_top(live_stack: Stack, listeners: list[Listener]) -> None:
    key = board("LiveC")
    many = [listen(live_stack, listeners, key, f"10.0.1.{n}") for n in range(3)]
    for listener in many:
        assert listener.next_top() == []
    leader = post(Player(live_stack.url), key, 42)
    for listener in many:
        assert listener.next_top() == [{"value": leader, "score": 42, "rank": 1}]


def test_a_client_that_leaves_is_released(live_stack: Stack, listeners: list[Listener]) -> None:
    key = board("LiveD")
    staying, leaving = listen(live_stack, listeners, key, "10.0.2.1"), listen(live_stack, listeners, key, "10.0.2.2")
    staying.next_top(), leaving.next_top()
    assert live_listeners(live_stack) == 2
    leaving.close()
    eventually(lambda: live_listeners(live_stack) == 1, WAIT_S, "the gone listener released")
    leader = post(Player(live_stack.url), key, 7)
    assert staying.next_top() == [{"value": leader, "score": 7, "rank": 1}]


def test_a_client_that_reads_nothing_holds_up_no_one(live_stack: Stack, listeners: list[Listener]) -> None:
    """A client that never reads, its receive buffer at the kernel's least, while 150 new leaders
    (some 150 KB of events) go out: more than its socket and the server's write buffer hold."""
    key = board("LiveH")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.connect(("127.0.0.1", live_stack.port))
    stuck.sendall(f"GET /api/leaderboard/{key}/live HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    try:
        eventually(lambda: live_listeners(live_stack) == 1, WAIT_S, "the stuck client is listening")
        reader = listen(live_stack, listeners, key, "10.0.4.1")
        reader.next_top()
        poster = Player(live_stack.url)
        for score in range(1, 151):
            leader = post(poster, key, 10_000 + score, name=f"Lead{score}")
        while (top := reader.next_top())[0]["value"] != leader:  # each top in turn, or the newest at once
            assert top[0]["score"] < 10_150
        assert live_listeners(live_stack) == 2, "the stuck client is still held, not dropped"
    finally:
        stuck.close()


def test_heartbeats_keep_a_stream_open_past_every_connection_timeout(
    live_stack: Stack, listeners: list[Listener]
) -> None:
    listener = listen(live_stack, listeners, board("LiveE"))
    listener.next_top()
    # 0.2 s apart: 20 of them are 4 s, past the 1 s head, body and keep-alive timeouts.
    eventually(lambda: listener.heartbeats >= 20, WAIT_S, "20 heartbeats")
    assert listener.ended_cleanly is None, "still open"
    leader = post(Player(live_stack.url), board("LiveE"), 1)
    assert listener.next_top() == [{"value": leader, "score": 1, "rank": 1}]


def test_a_thousand_streams_from_one_address_are_capped(live_stack: Stack, listeners: list[Listener]) -> None:
    key = board("LiveF")
    for _ in range(50):  # LIVE_MAX_PER_ADDRESS is 3
        listen(live_stack, listeners, key, "10.0.3.1")
    admitted = [listener for listener in listeners if listener.response.status_code == 200]
    refused = [listener for listener in listeners if listener.response.status_code != 200]
    assert len(admitted) == 3
    for listener in refused:
        assert listener.response.status_code == 429
        assert listener.response.headers["content-type"] == "application/json"
        assert listener.response.read() and listener.response.json() == {
            "status": 429,
            "message": "At most 3 live streams per address; close one first",
        }
    assert live_listeners(live_stack) == 3
    listen(live_stack, listeners, key, "10.0.3.2").next_top()  # another address is served
    admitted[0].close()
    eventually(lambda: live_listeners(live_stack) == 3, WAIT_S, "the closed stream released")
    assert listen(live_stack, listeners, key, "10.0.3.1").response.status_code == 200  # room again

    # LIVE_MAX_LISTENERS is 6: two more addresses fill it, and then any address is refused.
    listen(live_stack, listeners, key, "10.0.3.3").next_top()
    listen(live_stack, listeners, key, "10.0.3.4").next_top()
    full = listen(live_stack, listeners, key, "10.0.3.5")
    assert full.response.status_code == 503
    assert full.response.read() and full.response.json()["status"] == 503
    assert live_listeners(live_stack) == 6


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/leaderboard/leaderboards:survivor-Nowhere/live", 400),
        ("/api/leaderboard/leaderboards:survivor-%7Bx%7D/live", 400),
        ("/api/leaderboard/" + "x" * 5000 + "/live", 400),
        ("/api/leaderboard/leaderboards:survivor-LiveG/live/more", 404),
    ],
)
def test_a_bad_board_is_a_json_4xx_and_nothing_is_written(
    live_stack: Stack, db: redis.Redis, path: str, status: int
) -> None:
    before = set(db.scan_iter(match="stream:live:*"))
    answer = httpx.get(f"{live_stack.url}{path}", timeout=10)
    assert answer.status_code == status
    assert answer.json()["status"] == status and answer.json()["message"]
    assert set(db.scan_iter(match="stream:live:*")) == before
    assert live_listeners(live_stack) == 0


def test_head_answers_the_headers_and_opens_no_stream(live_stack: Stack) -> None:
    with httpx.Client(base_url=live_stack.url, timeout=10) as client:  # one connection, kept alive
        head = client.head(f"/api/leaderboard/{board('LiveG')}/live")
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")
        assert client.get("/healthz").status_code in (200, 503)  # the connection is free for the next request
    assert live_listeners(live_stack) == 0


def test_other_methods_are_a_json_405(live_stack: Stack) -> None:
    answer = httpx.post(f"{live_stack.url}/api/leaderboard/{board('LiveG')}/live", json={})
    assert answer.status_code == 405 and answer.json()["status"] == 405


def test_a_change_the_workers_did_not_announce_arrives_by_the_sweep(
    live_stack: Stack, listeners: list[Listener], db: redis.Redis
) -> None:
    """As if the worker died between settling a score and announcing it: the score is on the board,
    not on the live stream. Every worker's sweep (every CLAIM_IDLE_MS / 2, here 3 s) re-checks the boards."""
    key = board("LiveG")
    listener = listen(live_stack, listeners, key)
    assert listener.next_top() == []
    member = f"Quiet-{secrets.token_hex(16)}"
    db.zadd(key, {member: 3})
    assert listener.next_top() == [{"value": member, "score": 3, "rank": 1}]


def test_sigterm_ends_every_stream_cleanly(make_stack: StackFactory) -> None:
    """With two gateway processes: the gauge sums both, and each ends its streams."""
    stack = make_stack(LIVE_HEARTBEAT_S="0.2", GATEWAY_PROCESSES="2")
    many = [Listener(stack.url, board("Grassland")) for _ in range(6)]
    try:
        for listener in many:
            assert listener.next_top() == []
        assert live_listeners(stack) == 6
        stopped = stack.stop("gateway-1", signal.SIGTERM)
        assert stopped in (0, -signal.SIGTERM)  # uvicorn may raise the signal it caught again, once stopped
        for listener in many:
            assert listener.events.get(timeout=WAIT_S) is None
            assert listener.ended_cleanly, "the chunked body was closed, not cut"
    finally:
        for listener in many:
            listener.close()


def test_listeners_stay_through_a_redis_restart(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if os.environ.get("REDIS_URL"):
        pytest.skip("needs the embedded Redis, to crash and restart it; unset REDIS_URL")
    port = free_port()
    url, data_dir = f"redis://127.0.0.1:{port}/0", tmp_path / "redis"
    server = redis_stack.start(port, data_dir)
    try:
        with started(url, ARTIFACTS / "logs" / f"{request.node.name}.log", LIVE_HEARTBEAT_S="0.2") as stack:
            key = board("Grassland")
            player = Player(stack.url)
            listener = Listener(stack.url, key)
            try:
                assert listener.next_top() == []
                server.kill()
                server.wait()
                beats = listener.heartbeats
                eventually(lambda: listener.heartbeats > beats + 5, WAIT_S, "heartbeats while Redis is away")
                server = redis_stack.start(port, data_dir)
                back = {"key": key, "score": 9, "member": f"Back-{player.id}"}
                accepted = lambda: player.http.post("/api/leaderboard", json=back).status_code == 200  # noqa: E731
                eventually(accepted, WAIT_S, "scores accepted again")
                assert listener.next_top() == [{"value": back["member"], "score": 9, "rank": 1}]
                assert listener.ended_cleanly is None, "the same stream, never closed"
            finally:
                listener.close()
    finally:
        server.kill()
        server.wait()
