"""Instructions per request under load: the gateway's or Redis's, counted by callgrind while wrk drives the stack.

bench/measure/instructions.py counts one request at a time, in process; under load a process also
batches (many requests' commands in one write, a worker's batch in one script), and Redis's share
is not counted there at all. Here one process runs under `valgrind --tool=callgrind` (some fifty
times slower, so it is the bottleneck, on both sides alike) while wrk sends 64 connections'
requests to the stack; its instructions over the requests answered are one request's cost. Two
counts of one revision agree within a few percent, where wrk's req/s move 10-40% on this box.

    python -m bench.measure.loaded --compare 50fd6d5 --process redis --operations save,mixed
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import httpx
import redis

from bench.measure import fixtures, revisions, servers
from bench.measure.instructions import report
from bench.measure.load import run_wrk, write_requests
from bench.measure.workload import requests_for
from devtools import redis_stack

OPERATIONS = ["save", "score", "top", "read", "mixed", "me"]
CONNECTIONS = 64
WARM_UP_S = 5
START_TIMEOUT_S = 300  # a gateway or Redis under callgrind starts slowly


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.measure.loaded",
        description="Count the gateway's or Redis's instructions per request under a wrk load, with callgrind.",
    )
    parser.add_argument("--compare", metavar="REF", help="a git revision to count beside ours (none: ours alone)")
    parser.add_argument("--process", choices=["gateway", "redis"], default="redis", help="the process counted")
    parser.add_argument("--operations", type=lambda text: text.split(","), default=["save", "read", "mixed"])
    parser.add_argument("--seconds", type=int, default=20, help="of load counted, per operation")
    parser.add_argument("--board-size", type=int, default=10_000, help="members on the board")
    args = parser.parse_args()
    if unknown := set(args.operations) - set(OPERATIONS):
        parser.error(f"unknown operations {sorted(unknown)}; choose from {', '.join(OPERATIONS)}")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: `sudo apt-get install valgrind` (Debian)")
    with ExitStack() as exits:
        work = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="loaded-")))
        sides = revisions.sides(exits, args.compare, work)
        counts = {name: count_side(name, root, args, work / name.split()[0]) for name, root in sides.items()}
    print(f"\n{args.process}, instructions per request under {CONNECTIONS} connections:")
    report(counts, args.operations)


def count_side(name: str, root: Path, args: argparse.Namespace, work: Path) -> dict[str, float | None]:
    work.mkdir(parents=True)
    out = work / "callgrind.out"
    with ExitStack() as exits, open(work / "services.log", "w") as log:
        if args.process == "redis":
            redis_url, counted = start_redis_counted(exits, work / "redis", out, log)
        else:
            redis_url, _ = servers.start_redis(exits, work / "redis")
        fixtures.fill_board(redis_url, args.board_size)
        stack = servers.start_ours(exits, redis_url, 1, log, "warning", root=root)
        url = stack.url
        if args.process == "gateway":
            url, counted = start_gateway_counted(exits, stack.env, root, out, log)
        sessions = fixtures.sessions(stack.url, 512, redis_url)
        counts: dict[str, float | None] = {}
        for operation in args.operations:
            requests_file = write_requests(work / f"{operation}.tsv", requests_for(operation, sessions))
            run_wrk(url, requests_file, CONNECTIONS, WARM_UP_S, {})
            callgrind_control("-z", counted)
            run = run_wrk(url, requests_file, CONNECTIONS, args.seconds, {})
            time.sleep(1)  # the workers settle what was admitted
            counts[operation] = dumped(counted, out) / run.requests if run.requests else None
            print(f"{name}: {operation}: {run.requests} requests, {counts[operation] or 0:,.0f} a request", flush=True)
    return counts


def start_redis_counted(
    exits: ExitStack, data_dir: Path, out: Path, log: IO[str]
) -> tuple[str, subprocess.Popen[bytes]]:
    """The embedded Redis, append-only as `make run` has it, under callgrind."""
    server = redis_stack.provision()
    data_dir.mkdir(parents=True)
    port = servers.free_port()
    counted = valgrind([*server.command(port, data_dir)], out, server.env, None, log)
    exits.callback(servers.stop_process, counted)
    client = redis.Redis(port=port)
    wait_until(lambda: bool(client.ping()), redis.RedisError, "Redis under callgrind")
    return f"redis://127.0.0.1:{port}/0", counted


def start_gateway_counted(
    exits: ExitStack, env: dict[str, str], root: Path, out: Path, log: IO[str]
) -> tuple[str, subprocess.Popen[bytes]]:
    """One more gateway process of `root`, beside the stack's, under callgrind; its URL."""
    port = servers.free_port()
    argv = [sys.executable, "-m", "services.gateway"]
    counted = valgrind(argv, out, {**env, "PORT": str(port)}, root, log)
    exits.callback(servers.stop_process, counted)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, httpx.HTTPError, "the gateway")
    return url, counted


def valgrind(
    argv: list[str], out: Path, env: dict[str, str], cwd: Path | None, log: IO[str]
) -> subprocess.Popen[bytes]:
    command = ["valgrind", "--tool=callgrind", "--collect-systime=no", f"--callgrind-out-file={out}", *argv]
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(ready: Callable[[], bool], errors: type[Exception], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except errors:
            pass
        time.sleep(0.5)
    sys.exit(f"{what} did not start within {START_TIMEOUT_S} s")


def callgrind_control(flag: str, process: subprocess.Popen[bytes]) -> None:
    subprocess.run(["callgrind_control", flag, str(process.pid)], capture_output=True, check=True)


def dumped(process: subprocess.Popen[bytes], out: Path) -> int:
    """The instructions since the last zeroing: dumped now, read from the newest dump."""
    callgrind_control("-d", process)
    newest = max(out.parent.glob(f"{out.name}.*"), key=lambda path: path.stat().st_mtime)
    for line in newest.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {newest}")


if __name__ == "__main__":
    main()
