"""CPU instructions the gateway spends on one request, counted by callgrind, beside another revision.

wrk's figures on this 2-core box move 10-48% from run to run (docs/benchmarks.md), more than most
changes to the gateway do. An instruction count moves well under 1%: the gateway's app is driven in
process (bench/measure/inprocess.py, no HTTP server, no load generator) against an embedded Redis
and each checkout's own workers, under `valgrind --tool=callgrind`, once for N requests and once
for 3N; the difference over 2N is one request's cost, start-up and warm-up cancelled out. What it
leaves out is uvicorn's HTTP parsing and the event loop's socket work, the same for both sides.

    python -m bench.measure.instructions --compare 50fd6d5
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import orjson
import redis

from bench.measure import revisions, servers
from bench.measure.workload import BOARD, ME_PATH, TOP_PATH, player_document

PLACEHOLDER = "SESSIONID"  # bench/measure/inprocess.py puts the session's id in its place
DOCUMENT = orjson.dumps({"playerData": player_document(PLACEHOLDER)}).decode()
SCORE = orjson.dumps({"key": BOARD, "score": 1200, "member": f"Bench-{PLACEHOLDER}"}).decode()
SETUP = [["POST", "/api/playerstate", DOCUMENT], ["POST", "/api/leaderboard", SCORE]]
REQUESTS = {
    "read": ["GET", f"/api/playerstate/{PLACEHOLDER}", ""],
    "save": ["PATCH", "/api/playerstate", DOCUMENT],
    "score": ["POST", "/api/leaderboard", SCORE],
    "top": ["GET", TOP_PATH, ""],
    "me": ["GET", ME_PATH, ""],
}
VALGRIND_TIMEOUT_S = 900
BOARD_BOTS = 20


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.measure.instructions",
        description="Count the gateway's instructions per request with callgrind, ours beside another revision's.",
    )
    parser.add_argument("--compare", metavar="REF", help="a git revision to count beside ours (none: ours alone)")
    parser.add_argument(
        "--operations", type=lambda text: text.split(","), default=list(REQUESTS), help=f"of {', '.join(REQUESTS)}"
    )
    parser.add_argument("--requests", type=int, default=300, help="N: each count runs N and 3N requests")
    args = parser.parse_args()
    if unknown := set(args.operations) - set(REQUESTS):
        parser.error(f"unknown operations {sorted(unknown)}; choose from {', '.join(REQUESTS)}")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: `sudo apt-get install valgrind` (Debian) brings both")
    with ExitStack() as exits:
        work = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="instructions-")))
        sides = revisions.sides(exits, args.compare, work)
        counts = {name: count_side(name, root, args.operations, args.requests, work) for name, root in sides.items()}
    report(counts, args.operations)


class RunFailed(Exception):
    pass


def count_side(name: str, root: Path, operations: list[str], requests: int, work: Path) -> dict[str, float | None]:
    """Per operation, the instructions of one request, on a Redis and workers of `root`'s own; None
    for one it does not answer with a 200 (an older revision without the route)."""
    work = work / name.split()[0]
    work.mkdir(parents=True)
    with ExitStack() as exits, open(work / "services.log", "w") as log:
        redis_url, _ = servers.start_redis(exits, work / "redis")
        with redis.Redis.from_url(redis_url) as client:  # a full top 10, and neighbours around the session's 1200
            client.zadd(BOARD, {f"Bot{n}-bench": n * 100 for n in range(1, BOARD_BOTS + 1)})
        stack = servers.start_ours(exits, redis_url, 1, log, "warning", root=root)
        counts: dict[str, float | None] = {}
        for operation in operations:
            plan = orjson.dumps({"setup": SETUP, "request": REQUESTS[operation]}).decode()
            try:
                small, large = (
                    instructions(stack.env, root, plan, n, work / f"{operation}.{n}") for n in (requests, 3 * requests)
                )
            except RunFailed as error:
                counts[operation] = None
                print(f"{name}: {operation}: not counted: {error}", flush=True)
                continue
            counts[operation] = (large - small) / (2 * requests)
            print(f"{name}: {operation}: {counts[operation]:,.0f} instructions a request", flush=True)
    return counts


def instructions(env: dict[str, str], root: Path, plan: str, requests: int, out: Path) -> int:
    """What callgrind counted between inprocess.py's zeroing and its dump."""
    argv = [
        "valgrind", "--tool=callgrind", "--collect-systime=no", f"--callgrind-out-file={out}",
        sys.executable, "-m", "bench.measure.inprocess", "--root", str(root), "--plan", plan,
        "--requests", str(requests),
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=VALGRIND_TIMEOUT_S
    )  # fmt: skip
    dumps = sorted(out.parent.glob(f"{out.name}.*"))  # `-d` writes <out>.1; the end of the run, <out>
    if done.returncode != 0 or not dumps:
        raise RunFailed(f"the in-process run failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    for line in dumps[0].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RunFailed(f"no total in {dumps[0]}")


def report(counts: dict[str, dict[str, float | None]], operations: list[str]) -> None:
    names = list(counts)
    header = ["operation", *(f"{name} (instructions)" for name in names)]
    if len(names) == 2:
        header.append(f"{names[0]} / {names[1]}")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for operation in operations:
        figures = [counts[name][operation] for name in names]
        cells = [operation, *("-" if figure is None else f"{figure:,.0f}" for figure in figures)]
        if len(figures) == 2:
            ours, ref = figures
            cells.append("-" if ours is None or ref is None else f"{ours / ref:.3f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
