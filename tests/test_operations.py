"""Operating the services: behind a load balancer, their logs, their metrics."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack
from services.gateway.sessions import CookieSigner
from shared.protocol import Event, EventType
from shared.settings import Settings
from tests.conftest import ARTIFACTS, FAST, Player, StackFactory, eventually

# Two new sessions a minute per address: the third from one address is a 429.
TWO_SESSIONS = {"RATE_LIMIT_ADDRESS_SESSIONS": "2/minute"}


def from_peer(base_url: str, peer: str) -> httpx.Client:
    """A client whose connections come from `peer` (any 127.x address is this host's)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=peer), timeout=30)


def new_session(client: httpx.Client, forwarded_for: str | None = None) -> int:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    client.cookies.clear()
    return client.get("/session", headers=headers).status_code


def test_behind_a_trusted_proxy_each_forwarded_address_is_counted_apart(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1", **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.1") as proxy:
        assert [new_session(proxy, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        # Another player behind the same proxy, and a proxy chain ending in a third player.
        assert [new_session(proxy, "203.0.113.2") for _ in range(2)] == [200, 200]
        assert new_session(proxy, "198.51.100.7, 203.0.113.3") == 200
        assert new_session(proxy, "203.0.113.1") == 429  # still the first player's count


def test_a_forged_header_from_an_untrusted_peer_is_ignored(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1", **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.2") as stranger:
        forged = [new_session(stranger, f"203.0.113.{n}") for n in range(1, 4)]
        assert forged == [200, 200, 429]  # every one counted as 127.0.0.2, whatever it claims


def test_with_no_trusted_peer_even_loopback_cannot_choose_its_address(make_stack: StackFactory) -> None:
    """The default trusts no one, not uvicorn's loopback: another process on the host is no proxy."""
    stack = make_stack(saves=0, leaderboard=0, **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.1") as local:
        assert [new_session(local, f"203.0.113.{n}") for n in range(1, 4)] == [200, 200, 429]


# Each is what uvicorn takes for the client: the last entry that is not a trusted proxy.
MALFORMED = [b"garbage", b"203.0.113.1, not-an-address", b"1" * 10_000, b"203.0.113.1:99999:1", b"[::1", b"\xe9t\xe9"]


def test_a_malformed_forwarded_address_is_a_clear_400_never_a_500(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1")
    clear = {"status": 400, "message": "X-Forwarded-For does not end in a client IP address"}
    with from_peer(stack.url, "127.0.0.1") as proxy, from_peer(stack.url, "127.0.0.1") as newcomer:
        me = proxy.get("/session").json()["id"]  # a session of the proxy's own, for the writes
        proxy.cookies.clear()  # each write carries the cookie it is given
        signer, now = CookieSigner(os.environ["SESSION_SECRET"]), int(time.time())
        for forwarded_for in MALFORMED:
            headers = {b"x-forwarded-for": forwarded_for}
            new = newcomer.get("/session", headers=headers)
            assert (new.status_code, new.json()) == (400, clear), forwarded_for[:40]
            for confirmed_at in (now, now - 3600):  # the hot path; then FastAPI, which re-confirms an old cookie
                cookie = {b"cookie": f"cq_session={signer.sign(me, confirmed_at)}".encode()}
                write = proxy.post("/api/playerstate", json={"playerData": {"id": me}}, headers=headers | cookie)
                assert (write.status_code, write.json()) == (400, clear), forwarded_for[:40]


@pytest.mark.parametrize("value", ["proxy.internal", "10.0.0.1/8", "300.1.1.1"])
def test_forwarded_allow_ips_takes_only_addresses_and_networks(value: str) -> None:
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS"):
        Settings(forwarded_allow_ips=value)
    assert Settings(forwarded_allow_ips=" 10.0.0.0/8, ::1 ,*").forwarded_allow_ips == "10.0.0.0/8,::1,*"


# Logs: one JSON object a line, and a request's id in every line about it.


def json_lines(log_file: Path, service: str) -> list[dict[str, Any]]:
    """The lines a service wrote (the stack prefixes each with `[name-N] `), each parsed: all must be JSON."""
    prefix = f"[{service}-"
    return [
        json.loads(line.partition("] ")[2]) for line in log_file.read_text().splitlines() if line.startswith(prefix)
    ]


def test_a_saves_request_id_is_in_its_answer_and_the_gateways_and_the_workers_json_lines(
    make_stack: StackFactory, request: pytest.FixtureRequest
) -> None:
    stack = make_stack(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    player = Player(stack.url)
    answer = player.save("playerstate", {"level": 1}, "POST")
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", request_id)
    log_file = ARTIFACTS / "logs" / f"{request.node.name}.log"

    def about(service: str) -> list[dict[str, Any]]:
        return [line for line in json_lines(log_file, service) if line.get("request_id") == request_id]

    eventually(lambda: bool(about("saves")), 10, "the worker's line about the save")
    (gateway_line,) = about("gateway")
    (worker_line,) = about("saves")
    assert gateway_line["logger"] == "services.gateway.commands" and gateway_line["message"].endswith(": 200")
    assert worker_line["logger"] == "shared.worker" and worker_line["message"].endswith(": applied")
    event_id = gateway_line["message"].split()[1].rstrip(":")
    assert event_id in worker_line["message"]  # the same command
    every = json_lines(log_file, "gateway") + json_lines(log_file, "saves") + json_lines(log_file, "leaderboard")
    assert {"time", "level", "logger", "message"} <= set(every[0])
    assert any(line["logger"].startswith("uvicorn") for line in every)  # uvicorn's own lines too


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(b"trace-7.A_b", True), (b"x" * 64, True), (b"x" * 65, False), (b"a b", False), (b"a\\nb", False), (b"", False)],
)
def test_a_sane_request_id_is_kept_and_any_other_replaced(stack: Stack, sent: bytes, kept: bool) -> None:
    player = Player(stack.url)  # with a session, the board's read is answered on the fast path
    for get in (httpx.get, player.http.get):
        for path in ("/livez", "/api/leaderboard/leaderboards:survivor-Empty", "/", "/api/nowhere"):
            answer = get(f"{stack.url}{path}", headers={b"x-request-id": sent})
            assert answer.status_code < 500
            returned = answer.headers["x-request-id"].encode()
            assert returned == sent if kept else re.fullmatch(rb"[0-9a-f]{24}", returned)


def test_the_request_id_is_optional_in_the_envelope() -> None:
    """Entries an older gateway wrote have none and still decode; one no gateway would send is dropped."""
    event = Event.new(EventType.SCORE_SUBMIT, "s" * 32, {"score": 1}, 1000, 0, request_id="trace-1")
    assert Event.decode(event.encode(), 0) == event
    older = {name: value for name, value in event.encode().items() if name != b"request_id"}
    assert Event.decode(older, 0).request_id == ""
    assert Event.decode({**older, b"request_id": b"forged\nline"}, 0).request_id == ""


# Metrics: one view over every gateway process, the streams and the workers.


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_every_gateway_process_by_route_and_read_the_streams_from_redis(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(GATEWAY_PROCESSES="2")
    player = Player(stack.url)
    assert player.save("playerstate", {"level": 1}, "POST").status_code == 200
    assert (
        player.http.post(
            "/api/leaderboard", json={"key": "leaderboards:survivor-Scores", "score": 3, "member": f"ann-{player.id}"}
        ).status_code
        == 200
    )
    reads = 20
    for _ in range(reads):  # the fast path, over new connections: both processes answer some
        with httpx.Client(base_url=stack.url, cookies=player.http.cookies) as fresh:
            assert fresh.get(f"/api/playerstate/{player.id}").status_code == 200
    assert httpx.get(f"{stack.url}/api/nowhere/{player.id}").status_code == 404

    views = []
    for _ in range(6):  # whichever process answers, the same counts
        with httpx.Client(base_url=stack.url) as scraper:
            views.append(scrape(scraper))
    read = {"route": "/api/playerstate/{document_id}", "method": "GET", "status": "200"}
    assert {sample(view, "cachequest_http_requests_total", **read) for view in views} == {reads}
    samples = views[-1]
    duration = sample(samples, "cachequest_http_request_duration_seconds_count", route="/api/playerstate/{document_id}")
    assert duration == reads
    assert sample(samples, "cachequest_http_requests_total", route="/api/playerstate", method="POST", status="200")
    assert sample(samples, "cachequest_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not any(player.id in dict(labels).get("route", "") for _name, labels in samples)  # templates only

    assert sample(samples, "cachequest_events_total", group="saves", outcome="applied") == 1
    assert sample(samples, "cachequest_events_total", group="leaderboard", outcome="applied") == 1
    assert sample(samples, "cachequest_stream_length", stream="stream:{0}:saves") == 1
    for group in ("saves", "leaderboard"):
        assert ("cachequest_stream_pending", frozenset({("group", group)})) in samples
        assert sample(samples, "cachequest_stream_lag", group=group) == 0
    assert ("cachequest_dead_letters_total", frozenset()) in samples
    assert sample(samples, "cachequest_redis_up") == 1


def test_metrics_are_only_for_the_addresses_allowed(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, METRICS_ALLOW="127.0.0.2")
    assert httpx.get(f"{stack.url}/metrics").json() == {
        "status": 403,
        "message": "Metrics are served only to the addresses in METRICS_ALLOW",
    }
    with from_peer(stack.url, "127.0.0.2") as allowed:
        assert sample(scrape(allowed), "cachequest_redis_up") == 1


def test_a_stream_backlog_shows_as_lag_and_dead_letters_are_counted(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=1, **FAST)
    player = Player(stack.url)
    db = redis.Redis.from_url(stack.redis_url)
    db.xgroup_create("stream:{0}:saves", "saves", id="0", mkstream=True)
    assert player.save("playerstate", {"level": 1}, "POST").status_code == 504  # no saves worker
    db.xadd("stream:{0}:dead-letter", {"dead_reason": "a test"})
    with httpx.Client(base_url=stack.url) as scraper:
        samples = scrape(scraper)
    assert sample(samples, "cachequest_stream_lag", group="saves") == 1
    assert sample(samples, "cachequest_stream_pending", group="saves") == 0
    assert sample(samples, "cachequest_dead_letters_total") == 1


def test_with_http_metrics_off_requests_are_not_counted_but_redis_is_still_shown(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, HTTP_METRICS="false")
    player = Player(stack.url)
    assert player.http.get(f"/api/playerstate/{player.id}").status_code == 404
    answer = player.http.get(f"/api/playerstate/{player.id}")
    assert answer.headers["x-request-id"]  # the request ids stay
    with httpx.Client(base_url=stack.url) as scraper:
        samples = scrape(scraper)
    assert not [name for name, _labels in samples if name.startswith("cachequest_http_")]
    assert sample(samples, "cachequest_redis_up") == 1
    assert ("cachequest_dead_letters_total", frozenset()) in samples


def test_one_gateway_process_counts_requests_and_their_durations_in_memory(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0)
    player = Player(stack.url)
    for _ in range(3):
        assert player.http.get(f"/api/playerstate/{player.id}").status_code == 404
    brewed = player.http.request("PROPFIND", f"/api/playerstate/{player.id}").status_code
    with httpx.Client(base_url=stack.url) as scraper:
        samples = scrape(scraper)
    route = "/api/playerstate/{document_id}"
    assert sample(samples, "cachequest_http_requests_total", route=route, method="GET", status="404") == 3
    assert sample(samples, "cachequest_http_request_duration_seconds_count", route=route) == 3
    assert sample(samples, "cachequest_http_request_duration_seconds_bucket", route=route, le="+Inf") == 3
    assert sample(samples, "cachequest_http_request_duration_seconds_bucket", route=route, le="10.0") == 3
    assert 0 < sample(samples, "cachequest_http_request_duration_seconds_sum", route=route) < 10
    # A method of the client's choosing is counted as "other": no series made at will.
    assert sample(samples, "cachequest_http_requests_total", route="unmatched", method="other", status=str(brewed)) == 1
