"""`make run`'s supervisor (devtools/stack.py) stopping: in time on SIGTERM, and taking everything with it on SIGKILL.

The supervisor runs as `make run` does, with an embedded Redis of its own (in a temporary folder),
while clients hold connections open: idle keep-alives, half-sent heads and half-sent bodies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ARTIFACTS, ROOT, eventually, free_port
from tests.test_harness import alive, children_of, command_line

pytestmark = pytest.mark.slow

# The gateway's own timeouts set far away, so that only its stopping can end the held connections.
PATIENT_CLIENTS = {"HEAD_TIMEOUT_S": "120", "BODY_TIMEOUT_S": "120", "KEEP_ALIVE_S": "120"}
# GRACEFUL_SHUTDOWN_S (5 s by default) for the gateway, up to a second for each worker to finish its
# batch (BLOCK_MS), Redis's final fsync, and a margin for a busy machine.
STOP_BOUND_S = 5 + 5


@contextmanager
def supervisor(tmp_path: Path, name: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m devtools.stack`, up and healthy; its pid's tree is SIGKILLed afterwards if anything is left."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}  # a Redis of its own
    env |= {"PORT": str(port), "EMBEDDED_REDIS_PORT": str(free_port()), "EMBEDDED_REDIS_DIR": str(tmp_path / "redis")}
    env |= PATIENT_CLIENTS
    log_file = ARTIFACTS / "logs" / f"{name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log, ExitStack() as cleanup:
        process = subprocess.Popen([sys.executable, "-m", "devtools.stack"], cwd=ROOT, env=env, stdout=log, stderr=log)
        started: set[int] = set()

        def leave_nothing() -> None:
            for pid in started | children_of(process.pid):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
            process.wait()

        cleanup.callback(leave_nothing)

        def healthy() -> bool:
            started.update(children_of(process.pid))
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, 60, "make run's stack is healthy")
        yield process, port


def hold_connections(port: int, each: int = 20) -> list[socket.socket]:
    """Idle keep-alives (one request served), half-sent heads, half-sent bodies, and a client that asks for
    more than the kernel's buffers hold and reads none of it (only GRACEFUL_SHUTDOWN_S ends its request)."""
    slow_reader = socket.socket()
    slow_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_reader.connect(("127.0.0.1", port))
    slow_reader.sendall(b"GET /vendor/kaplay/kaplay.js.map HTTP/1.1\r\nHost: x\r\n\r\n" * 10)  # 9 MB of answers
    held = [slow_reader]
    for _ in range(each):
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        head = socket.create_connection(("127.0.0.1", port))
        head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(b"POST /api/playerstate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        held += [idle, head, body]
    return held


def services_of(pids: set[int]) -> dict[int, str]:
    """The gateway, the workers and Redis among `pids`, by pid."""
    found = {pid: command_line(pid) for pid in pids}
    return {pid: line for pid, line in found.items() if "services." in line or "redis-server" in line}


def test_sigterm_with_connections_held_stops_everything_in_time(tmp_path: Path) -> None:
    with supervisor(tmp_path, "test_supervisor_sigterm") as (process, port):
        services = services_of(children_of(process.pid))
        assert len(services) == 4, services  # Redis, the gateway and two workers
        held = hold_connections(port)
        started_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_BOUND_S + 20)
        took = time.monotonic() - started_at
        for connection in held:
            connection.close()
        assert took < STOP_BOUND_S, f"make run took {took:.1f} s to stop"
        assert process.returncode == 0
        assert not [line for pid, line in services.items() if alive(pid)]


def test_a_killed_supervisor_leaves_no_process_behind(tmp_path: Path) -> None:
    with supervisor(tmp_path, "test_supervisor_sigkill") as (process, port):
        services = services_of(children_of(process.pid))
        assert len(services) == 4, services
        held = hold_connections(port)
        process.kill()
        process.wait()
        eventually(
            lambda: not any(alive(pid) for pid in services), STOP_BOUND_S, "Redis, the gateway and the workers end"
        )
        for connection in held:
            connection.close()
