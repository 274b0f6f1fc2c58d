"""The attacks of issue 25 against a real gateway, each bounded in count and time, on loopback only.

Pipelining floods that never read their answers, one address holding thousands of sockets, two
session cookies, heads counted across pipelined reads, malformed HTTP, clients that hang up mid-body,
and reply streams left behind. "Another address" is another loopback source (127.0.0.2): Linux
routes all of 127.0.0.0/8 to the loopback interface.
"""

from __future__ import annotations

import contextlib
import re
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis

from devtools.stack import Stack
from services.gateway.server import ConnectionLimits, address_key
from services.gateway.sessions import COOKIE_NAME, HOST_COOKIE_NAME, CookieSigner
from shared.settings import Settings
from tests.conftest import ARTIFACTS, Player, StackFactory, eventually, fresh_redis, started

SEND_TIMEOUT_S = 2
PER_ADDRESS = 200
SETTINGS = {
    "SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
    "MAX_CONNECTIONS": "2000",
    "MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
}
LOG = ARTIFACTS / "logs/test_connection_hardening.log"
LIVEZ = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
OTHER_ADDRESS = "127.0.0.2"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # this process's sockets, for the floods
    with ExitStack() as cleanup:
        url = cleanup.enter_context(fresh_redis(tmp_path_factory.mktemp("redis")))
        yield cleanup.enter_context(started(url, LOG, 1, 1, **SETTINGS))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(stack: Stack, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.port), timeout=10, source_address=(source, 0))


def rss_mb(stack: Stack) -> float:
    status = Path(f"/proc/{stack.processes['gateway-1'].pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def answers(connection: socket.socket, count: int, timeout_s: float = 10) -> list[bytes]:
    """The heads of `count` answers on a keep-alive connection, their bodies read too (Content-Length)."""
    connection.settimeout(timeout_s)
    received, heads = b"", list[bytes]()
    while len(heads) < count:
        end = received.find(b"\r\n\r\n")
        if end < 0:
            chunk = connection.recv(1 << 20)
            assert chunk, f"closed after {len(heads)} of {count} answers"
            received += chunk
            continue
        head = received[:end]
        length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
        while len(received) < end + 4 + length:
            chunk = connection.recv(1 << 20)
            assert chunk, f"closed inside answer {len(heads) + 1}"
            received += chunk
        heads.append(head)
        received = received[end + 4 + length :]
    return heads


def closed_answer(connection: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    received = b""
    connection.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    connection.close()
    return received


def test_a_pipelining_flood_that_reads_nothing_is_bounded_and_others_are_answered(gateway: Stack) -> None:
    """8 connections send pipelined GETs (240 per 8 KB write) for 4 s and never read. Unbounded, 4
    such connections grew the gateway by 1.5 GiB in 5 s and nobody else was answered. (What the
    kernel buffers for them is the kernel's; the send-timeout test below sees such connections cut.)"""
    before = rss_mb(gateway)
    stop = threading.Event()
    sent = [0]
    flood = LIVEZ * 240

    def attacker() -> None:
        connections = [connect(gateway) for _ in range(8)]
        for connection in connections:
            connection.setblocking(False)
        deadline = time.monotonic() + 4
        while not stop.is_set() and time.monotonic() < deadline:
            _, writable, _ = select.select([], connections, [], 0.05)
            for connection in writable:
                with contextlib.suppress(BlockingIOError, OSError):
                    sent[0] += connection.send(flood)
        stop.wait()
        for connection in connections:
            connection.close()

    thread = threading.Thread(target=attacker)
    thread.start()
    slowest, most = 0.0, before
    try:
        with httpx.Client(base_url=gateway.url, timeout=5) as other:
            for _ in range(30):
                started_at = time.monotonic()
                assert other.get("/livez").status_code == 200
                assert other.get("/api/leaderboard/leaderboards:survivor-Grassland").status_code == 404
                slowest = max(slowest, time.monotonic() - started_at)
                most = max(most, rss_mb(gateway))
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert sent[0] > 10 * 2**20, "the attack sent enough to matter"
    assert slowest < 1, f"another player waited {slowest:.2f} s"
    assert most - before < 40, f"the gateway grew by {most - before:.0f} MB"


@pytest.mark.parametrize("count", [1000], ids=["1000-requests"])
def test_every_pipelined_request_is_answered_in_order(gateway: Stack, count: int) -> None:
    """Held and released past MAX_PIPELINED, none lost or reordered: GETs and POSTs with bodies, one write."""
    connection = connect(gateway)
    body = b'{"key": "leaderboards:survivor-Grassland", "score": 1, "member": "x"}'
    post = b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    post += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    requests = [LIVEZ if n % 3 else post for n in range(count)]
    sender = threading.Thread(target=connection.sendall, args=(b"".join(requests),))
    sender.start()
    heads = answers(connection, count, timeout_s=30)
    sender.join()
    connection.close()
    statuses = [head.split()[1] for head in heads]
    assert statuses == [b"200" if n % 3 else b"401" for n in range(count)]  # POSTs need a session


def test_small_pipelined_requests_in_one_big_read_are_no_431(gateway: Stack) -> None:
    """~580 GETs in one 20 KB write: counted as heads of their own, not as one 20 KB head."""
    connection = connect(gateway)
    connection.sendall(LIVEZ * 580 + LIVEZ[:20])  # the read ends inside the next head
    time.sleep(0.2)
    connection.sendall(LIVEZ[20:])
    assert [head.split()[1] for head in answers(connection, 581)] == [b"200"] * 581
    connection.close()


def test_a_head_after_a_big_body_in_the_same_read_is_no_431(gateway: Stack) -> None:
    """A 40 KB body, then requests, the read ending inside a head: the body is no head's bytes."""
    body = b'{"key": "' + b"k" * 40_000 + b'", "score": 1, "member": "x"}'
    post = b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    post += b"Content-Length: %d\r\n\r\n" % len(body) + body
    connection = connect(gateway)
    connection.sendall(post + LIVEZ * 3 + LIVEZ[:20])
    time.sleep(0.2)
    connection.sendall(LIVEZ[20:])
    assert [head.split()[1] for head in answers(connection, 5)] == [b"401", b"200", b"200", b"200", b"200"]
    connection.close()


def test_one_address_holding_thousands_of_sockets_leaves_others_served(gateway: Stack) -> None:
    """127.0.0.1 opens 3,000 sockets of one byte each (more than MAX_CONNECTIONS, 2,000), re-opening
    those closed, for 4 s; 127.0.0.2 is served all along."""
    stop = threading.Event()
    held: list[socket.socket] = []
    refused = [0]

    def attacker() -> None:
        deadline = time.monotonic() + 4
        while not stop.is_set() and time.monotonic() < deadline:
            poll = select.poll()  # select() takes no descriptor past 1024
            for connection in held:
                poll.register(connection, select.POLLIN)
            closed = {fd for fd, _event in poll.poll(0)}  # by the gateway
            refused[0] += len(closed)
            for connection in [c for c in held if c.fileno() in closed]:
                connection.close()
                held.remove(connection)
            while len(held) < 3000:
                connection = connect(gateway)
                with contextlib.suppress(OSError):
                    connection.send(b"G")
                held.append(connection)
            time.sleep(0.05)

    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        time.sleep(1)
        slowest = 0.0
        for _ in range(30):
            started_at = time.monotonic()
            other = connect(gateway, OTHER_ADDRESS)
            other.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert closed_answer(other).startswith(b"HTTP/1.1 200")
            slowest = max(slowest, time.monotonic() - started_at)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
    assert slowest < 1
    assert refused[0] >= 3000 - PER_ADDRESS, "the gateway kept at most its per-address share of them"
    assert "MAX_CONNECTIONS_PER_ADDRESS" in LOG.read_text()


def test_a_client_that_stops_reading_is_cut_after_the_send_timeout(gateway: Stack) -> None:
    """20 pipelined GETs of a 900 KB file, none of it read: the gateway's buffers fill at once, and
    the connection is cut SEND_TIMEOUT_S later (the sweeper looks ten times per shortest timeout)."""
    connection = connect(gateway)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.sendall(b"GET /vendor/kaplay/kaplay.mjs.map HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
    sent_at = time.monotonic()
    while established(connection) and time.monotonic() - sent_at < SEND_TIMEOUT_S + 3:
        time.sleep(0.05)
    cut = time.monotonic() - sent_at
    connection.close()
    assert SEND_TIMEOUT_S - 0.5 < cut < SEND_TIMEOUT_S + 3, f"cut after {cut:.2f} s"
    log = LOG.read_text()
    assert "read none of its answers" in log
    assert "closed transport" not in log  # the request being answered was told, not left writing into it


def established(connection: socket.socket) -> bool:
    """Whether the TCP connection is still open both ways (Linux's TCP_INFO state), read without reading it."""
    return connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1  # TCP_ESTABLISHED


MALFORMED = {
    "content-length-and-chunked": b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    "obs-fold": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
    "bare-lf": b"GET /livez HTTP/1.1\nHost: x\n\n",
    "nul-in-header": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_a_json_400(gateway: Stack, request_bytes: bytes) -> None:
    connection = connect(gateway)
    connection.sendall(request_bytes)
    head, _, body = closed_answer(connection).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head
    assert body == b'{"status":400,"message":"The request is not valid HTTP/1.1"}'


def test_malformed_requests_log_a_line_per_interval_not_one_each(gateway: Stack) -> None:
    lines_before = LOG.read_text().count("Invalid HTTP request")
    for _ in range(300):
        connection = connect(gateway)
        connection.sendall(MALFORMED["bare-lf"])
        closed_answer(connection)
    time.sleep(0.5)
    assert LOG.read_text().count("Invalid HTTP request") - lines_before <= 2


def metrics(stack: Stack) -> list[str]:
    text = httpx.get(f"{stack.url}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith("cachequest_http_requests_total")]


def metric(stack: Stack, status: str) -> float:
    lines = [line for line in metrics(stack) if f'status="{status}"' in line]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'method="PATCH"' in line)


def test_a_client_gone_mid_body_counts_as_499_not_500(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0)
    player = Player(stack.url)
    cookie = player.http.cookies[COOKIE_NAME]
    for _ in range(5):
        connection = connect(stack)
        connection.sendall(
            b"PATCH /api/playerstate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Cookie: cq_session=%s\r\nContent-Length: 1000\r\n\r\n{"playerData": ' % cookie.encode()
        )
        time.sleep(0.05)
        connection.close()
    eventually(lambda: metric(stack, "499") == 5, 5, f"five requests counted as 499: {metrics(stack)}")
    assert metric(stack, "500") == 0


def test_a_reply_stream_is_removed_once_read(gateway: Stack) -> None:
    player = Player(gateway.url)
    db = redis.Redis.from_url(gateway.redis_url)
    for level in range(5):
        assert player.save("playerstate", {"level": level}, "POST" if level == 0 else "PATCH").status_code == 200
    eventually(lambda: not list(db.scan_iter("*:reply:*")), 2, "no reply stream left")


def two_cookies(first: str, second: str, name: str = COOKIE_NAME) -> dict[str, str]:
    return {"cookie": f"{name}={first}; {name}={second}"}


def test_two_session_cookies_are_a_400_with_no_cookie_set(gateway: Stack) -> None:
    attacker, victim = Player(gateway.url), Player(gateway.url)
    tokens = attacker.http.cookies[COOKIE_NAME], victim.http.cookies[COOKIE_NAME]
    cases = [two_cookies(*tokens), two_cookies("garbage", tokens[1]), two_cookies(tokens[1], "x.1.y")]
    for headers in cases:
        for method, path in [
            ("GET", "/session"),
            ("GET", f"/api/playerstate/{victim.id}"),  # the fast path
            ("GET", "/api/leaderboard/leaderboards:survivor-Grassland"),  # public, on the fast path
            ("PATCH", "/api/playerstate"),
        ]:
            answer = httpx.request(method, f"{gateway.url}{path}", headers=headers, json={"playerData": {}})
            assert answer.status_code == 400, (method, path, answer.text)
            assert answer.json() == {"status": 400, "message": "The request carries more than one session cookie"}
            assert "set-cookie" not in answer.headers
    assert victim.http.get("/session").json()["id"] == victim.id  # the victim's session is untouched
    same_twice = httpx.get(f"{gateway.url}/session", headers=two_cookies(tokens[1], tokens[1]))
    assert same_twice.json()["id"] == victim.id  # one session, whatever the jar sent it twice


def test_production_cookies_are_host_prefixed_secure_and_http_only() -> None:
    secret = "s" * 32
    production = Settings(environment="production", session_secret=secret)
    assert production.secure_cookie
    assert not Settings(environment="production", session_secret=secret, cookie_secure=False).secure_cookie
    assert not Settings().secure_cookie  # development: plain-HTTP localhost


def test_production_moves_an_old_cookie_to_the_host_prefixed_name(make_stack: StackFactory) -> None:
    secret = "p" * 40
    stack = make_stack(saves=0, leaderboard=0, ENVIRONMENT="production", SESSION_SECRET=secret)
    created = httpx.get(f"{stack.url}/session")
    [cookie] = created.headers.get_list("set-cookie")  # a new player has no old cookie to expire
    assert cookie.startswith(f"{HOST_COOKIE_NAME}=") and "; Secure" in cookie and "; HttpOnly" in cookie
    assert "; Path=/" in cookie and "domain" not in cookie.lower()
    player_id = created.json()["id"]
    old = CookieSigner(secret).sign(player_id, int(time.time()))
    moved = httpx.get(f"{stack.url}/session", headers={"cookie": f"{COOKIE_NAME}={old}"})
    assert moved.json()["id"] == player_id  # the player's existing cookie keeps their session
    set_cookies = moved.headers.get_list("set-cookie")
    assert any(c.startswith(f"{HOST_COOKIE_NAME}=") for c in set_cookies)
    assert f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax" in set_cookies
    planted = httpx.get(  # a cookie of the old name planted beside the new one changes nothing
        f"{stack.url}/session", headers={"cookie": f"{COOKIE_NAME}=attacker; {HOST_COOKIE_NAME}={old}"}
    )
    assert planted.json()["id"] == player_id
    twice = httpx.get(f"{stack.url}/session", headers=two_cookies(old, "x.1.y", HOST_COOKIE_NAME))
    assert twice.status_code == 400 and "set-cookie" not in twice.headers


def test_what_counts_as_one_address() -> None:
    """An IPv4 address is one address; an IPv6 client is its /64 (one subscriber's block), so the
    2^64 addresses an attacker has there count as one."""
    assert address_key("2001:db8::1") == address_key("2001:db8:0:0:ffff::2")
    assert address_key("2001:db8::1") != address_key("2001:db8:0:1::1")
    assert address_key("203.0.113.7") != address_key("203.0.113.8")
    assert address_key("::ffff:203.0.113.7") != address_key("::ffff:203.0.113.8")


def test_connections_from_a_trusted_proxy_are_not_counted_per_address() -> None:
    limits = ConnectionLimits(16 * 1024, 10, 30, 4096, 256, 16, 30, "10.0.0.0/8,192.0.2.1")
    assert not limits.counted("10.1.2.3") and not limits.counted("192.0.2.1")
    assert limits.counted("192.0.2.2") and limits.counted("2001:db8::1")
    assert not ConnectionLimits(16 * 1024, 10, 30, 4096, 256, 16, 30, "*").counted("192.0.2.2")
    assert ConnectionLimits(16 * 1024, 10, 30, 4096, 256, 16, 30, "").counted("10.1.2.3")
