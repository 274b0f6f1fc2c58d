"""The test suite's own promise: a run stopped with SIGTERM (a CI timeout, `kill`) leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, eventually

pytestmark = pytest.mark.slow


def children_of(pid: int) -> set[int]:
    """Every process whose parent is `pid`, and theirs, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it exited meanwhile
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_sigterm_to_pytest_stops_the_stack_it_started() -> None:
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}  # a Redis of its own
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_api.py"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started: set[int] = set()
    try:

        def gateway_up() -> bool:
            started.update(children_of(run.pid))
            return any("services.gateway" in command_line(pid) for pid in started)

        eventually(gateway_up, 60, "the inner run starts its gateway")
        time.sleep(1)  # and the workers beside it
        started.update(children_of(run.pid))
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        eventually(lambda: not any(alive(pid) for pid in started), 30, "every process it started stops")
    finally:
        for pid in started | {run.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        run.wait()
    assert run.returncode != 0, "the inner run was interrupted, not finished"
