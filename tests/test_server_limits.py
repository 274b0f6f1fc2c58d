"""The gateway's connections under abuse: heads too big or too slow, stalled bodies, idle and surplus connections.

Raw sockets against a real gateway, started with a soft open-file limit of 256 (as some shells and
service managers give), a cap of 400 connections, and one-second clocks so every deadline passes
within a test.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from devtools.stack import Stack
from services.gateway.server import RESERVED_FDS, connection_cap
from shared.settings import Settings
from tests.conftest import ARTIFACTS, ROOT, free_port, fresh_redis, started

LIMITS = {
    "HEAD_TIMEOUT_S": "1",
    "BODY_TIMEOUT_S": "1",
    "KEEP_ALIVE_S": "1",
    "MAX_CONNECTIONS": "400",
    "MAX_CONNECTIONS_PER_ADDRESS": "1000",  # these tests measure the cap of the process
}
HEAD_LIMIT = Settings().max_head_bytes
READ = b"GET /api/leaderboard/leaderboards:survivor-Grassland?count=10 HTTP/1.1\r\nHost: x\r\n"


@contextmanager
def soft_file_limit(limit: int) -> Iterator[None]:
    """Processes started in the block inherit this soft open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with ExitStack() as cleanup:
        url = cleanup.enter_context(fresh_redis(tmp_path_factory.mktemp("redis")))
        with soft_file_limit(256):
            log_file = ARTIFACTS / "logs/test_server_limits.log"
            running = cleanup.enter_context(started(url, log_file, 1, 1, **LIMITS))
        yield running


def connect(stack: Stack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.port), timeout=10)


def answer(connection: socket.socket) -> tuple[int, dict[str, object] | None]:
    """The status and JSON body of the answer, once the gateway has closed the connection (0 and None: no answer)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    connection.close()
    if not received:
        return 0, None
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if b"application/json" in head else None


def served(connection: socket.socket) -> bytes:
    """The head of one whole answer, its body read too, on a connection that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return head


def answered_in(stack: Stack, path: str) -> float:
    started_at = time.monotonic()
    httpx.get(f"{stack.url}{path}", timeout=5)
    return time.monotonic() - started_at


def rss_mb(stack: Stack) -> float:
    status = Path(f"/proc/{stack.processes['gateway-1'].pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def open_files(stack: Stack) -> int:
    return len(list(Path(f"/proc/{stack.processes['gateway-1'].pid}/fd").iterdir()))


def cookies(size: int) -> bytes:
    return b"; ".join(b"c%d=1" % n for n in range(size // 6))


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + cookies(20_000) + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 2_000 + b"\r\n",
    ],
    ids=["one-header", "long-url", "tiny-cookies", "many-headers"],
)
@pytest.mark.parametrize("pieces", [1, 40], ids=["at-once", "trickled"])
def test_a_head_over_the_limit_is_431(gateway: Stack, head: bytes, pieces: int) -> None:
    connection = connect(gateway)
    step = -(-len(head) // pieces)
    try:
        for start in range(0, len(head), step):
            connection.sendall(head[start : start + step])
            time.sleep(0.01 if pieces > 1 else 0)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the end of it: the answer is already waiting
    status, body = answer(connection)
    assert status == 431 and body is not None
    assert body == {"status": 431, "message": f"The request's head is over the {HEAD_LIMIT}-byte limit"}


def test_a_head_under_the_limit_and_a_big_body_are_served(gateway: Stack) -> None:
    connection = connect(gateway)
    connection.sendall(READ + b"X-Big: " + b"a" * (HEAD_LIMIT - 1_000) + b"\r\nConnection: close\r\n\r\n")
    assert answer(connection) == (404, {"status": 404, "message": "No leaderboard entries found"})
    body = b'{"key": "' + b"k" * 40_000 + b'", "score": 1, "member": "x"}'
    connection = connect(gateway)  # head and body in one read: the head is measured, the body is not
    head = b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
    connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    status, _ = answer(connection)
    assert status == 401  # no session: answered by the app, not refused for its size


def test_an_endless_head_costs_neither_memory_nor_other_requests_time(gateway: Stack) -> None:
    """A client streaming unfinished heads of up to 256 MiB, over and over, for three seconds."""
    before = rss_mb(gateway)
    stop = threading.Event()
    cut_at: list[int] = []

    def flood() -> None:
        chunk = b"a" * 65536
        while not stop.is_set():
            connection = connect(gateway)
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            sent = 0
            try:
                while sent < 256 * 2**20 and not stop.is_set():
                    connection.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                cut_at.append(sent)
            connection.close()

    attacker = threading.Thread(target=flood)
    attacker.start()
    try:
        time.sleep(0.5)
        slowest = max(answered_in(gateway, "/api/leaderboard/leaderboards:survivor-Grassland") for _ in range(20))
    finally:
        stop.set()
        attacker.join()
    assert cut_at and max(cut_at) < 16 * 2**20, "the gateway cut each head short (what was sent fit in the buffers)"
    assert slowest < 0.5
    assert rss_mb(gateway) < before + 30


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"", (0, None)),  # a connection never used (a browser's preconnect): closed without an answer
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", (408, "head")),
        (b"POST /api/leaderboard HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", (408, "body")),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", (200, None)),  # then idle: uvicorn's keep-alive ends it
    ],
    ids=["nothing", "half-sent-head", "half-sent-body", "idle-keep-alive"],
)
def test_what_keeps_a_connection_waiting_ends_after_its_timeout(
    gateway: Stack, sent: bytes, expected: tuple[int, str | None]
) -> None:
    connection = connect(gateway)
    started_at = time.monotonic()
    connection.sendall(sent)
    if expected[0] == 200:
        assert served(connection).startswith(b"HTTP/1.1 200")
        started_at = time.monotonic()
    status, body = answer(connection)
    took = time.monotonic() - started_at
    assert 0.9 < took < 2.5, f"closed after {took:.2f} s"
    if expected[0] == 408:
        assert status == 408 and body is not None
        assert body == {"status": 408, "message": f"The request's {expected[1]} did not arrive within 1 s"}
    else:
        assert status == 0  # closed with no (further) answer


def test_a_trickled_head_gets_no_more_time(gateway: Stack) -> None:
    """A byte every 200 ms, each well within any idle timeout: the head's deadline counts from its first byte."""
    connection = connect(gateway)
    started_at = time.monotonic()
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            connection.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass
    status, _ = answer(connection)
    assert status == 408 and time.monotonic() - started_at < 2.5


def test_healthz_and_reads_answer_while_slowloris_holds_300_connections(gateway: Stack) -> None:
    """More than the file limit the gateway was started with (256), each re-opened as soon as it is closed."""
    stop = threading.Event()

    def slowloris() -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            for connection in [c for c in held if select.select([c], [], [], 0)[0]]:  # closed by the gateway
                connection.close()
                held.remove(connection)
            while len(held) < 300:
                connection = connect(gateway)
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                held.append(connection)
            time.sleep(0.05)
        for connection in held:
            connection.close()

    attacker = threading.Thread(target=slowloris)
    attacker.start()
    most_open = 0
    try:
        time.sleep(0.5)
        for _ in range(10):
            most_open = max(most_open, open_files(gateway))
            health = httpx.get(f"{gateway.url}/healthz", timeout=3)
            read = httpx.get(f"{gateway.url}/api/leaderboard/leaderboards:survivor-Grassland", timeout=3)
            assert health.status_code == 200 and read.status_code == 404
            time.sleep(0.2)
    finally:
        stop.set()
        attacker.join()
    assert most_open > 300, "the gateway itself held them (beyond its inherited limit of 256)"


def test_connections_over_the_cap_are_closed_at_once(gateway: Stack) -> None:
    connections = [connect(gateway) for _ in range(450)]
    time.sleep(0.3)  # well within HEAD_TIMEOUT_S: only the cap closes anything
    closed = [c for c in connections if select.select([c], [], [], 0)[0] and answer(c) == (0, None)]
    for connection in connections:
        connection.close()
    assert 40 <= len(closed) <= 60, f"{len(closed)} of 450 closed with a cap of 400"
    assert httpx.get(f"{gateway.url}/healthz", timeout=3).status_code == 200
    assert "refused" in (ARTIFACTS / "logs/test_server_limits.log").read_text()


def test_the_cap_stays_under_the_file_limit() -> None:
    settings = Settings(max_connections=4096)
    assert connection_cap(settings, 1_048_576) == 4096
    assert connection_cap(settings, 4096) == 4096 - RESERVED_FDS
    assert connection_cap(settings, 256) == 0


def test_a_file_limit_with_no_room_for_connections_is_a_clear_start_up_error() -> None:
    def tiny() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    gateway = subprocess.run(
        [sys.executable, "-m", "services.gateway"], env={**os.environ, "PORT": str(free_port())},
        cwd=ROOT, capture_output=True, text=True, timeout=30, preexec_fn=tiny,
    )  # fmt: skip
    assert gateway.returncode != 0
    assert "open-file limit is 300" in gateway.stderr and "ulimit -Hn" in gateway.stderr, gateway.stderr
