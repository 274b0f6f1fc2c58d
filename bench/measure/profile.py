"""Where the CPU goes: py-spy samples the gateway and a worker while wrk drives saves.

py-spy reads a process's stacks from outside (no code change, no restart); only
samples where a thread is running are kept, so the profile is CPU time, and the
rest of the wall clock is time spent waiting (on Redis, on replies, on the
other processes sharing the two cores). Each sample's leaf frame is put in one
bucket by the file it is in, which is what the report shows.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure.load import Run, Target, run_wrk

# A sample whose stack passes through here is FastAPI running a plain `def` dependency in a thread
# (in the event loop's thread) or through a pool thread (the dependency's own body).
THREAD_POOL = ("run_in_threadpool", "run_sync_in_worker_thread", "WorkerThread.run")
# A pool thread waiting for work is idle, though py-spy sees it waiting on a lock, not in a syscall.
POOL_THREAD, WAITING = "WorkerThread.run", "Condition.wait"
# Otherwise the first match wins: the leaf frame's file decides the bucket.
BUCKETS = (
    ("logging", ("/logging/",)),
    ("JSON (orjson, json)", ("orjson", "/json/")),
    ("pydantic validation", ("pydantic",)),
    ("FastAPI / Starlette (routing, middleware, responses)", ("fastapi/", "starlette/")),
    ("uvicorn + httptools (HTTP server)", ("uvicorn/", "httptools")),
    ("redis-py client (commands, parsing, pool)", ("redis/", "hiredis")),
    ("asyncio / uvloop (event loop, tasks)", ("asyncio/", "uvloop", "(selectors.py")),
    ("project code (services/, shared/)", ("services/", "shared/")),
)
LINE = re.compile(r":\d+\)$")
OTHER = "other (stdlib, typing, uuid, hmac, ...)"


@dataclass(frozen=True)
class Profile:
    process: str
    operation: str
    samples: int
    buckets: dict[str, float]  # percent of samples
    top_functions: list[tuple[str, float]]  # self time: the leaf frame
    top_inclusive: list[tuple[str, float]]  # project and rate-limiter functions, anywhere on the stack
    raw_file: str


def py_spy() -> str | None:
    """On PATH, or beside this interpreter (a virtual environment's bin/ is often not on PATH)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def record(pid: int, seconds: float, output: Path) -> subprocess.Popen[str]:
    argv = [py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking", "--subprocesses"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def profile_under_load(
    target: Target, operation: str, requests_file: Path, pids: dict[str, int], seconds: float, out: Path
) -> tuple[list[Profile], Run]:
    """Record every process in `pids` while wrk runs at 64 connections; their summaries and the run."""
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / f"profile-{operation}-{name.replace(' ', '-')}.txt" for name in pids}
    recorders = {name: record(pid, seconds, files[name]) for name, pid in pids.items()}
    result: list[Run] = []
    load = threading.Thread(target=lambda: result.append(run_wrk(target.url, requests_file, 64, seconds, target.watch)))
    load.start()
    load.join(seconds + 60)
    profiles = []
    for name, recorder in recorders.items():
        _, errors = recorder.communicate(timeout=seconds + 60)
        raw = files[name]
        if recorder.returncode != 0 or not raw.exists():
            print(f"  py-spy could not record {name}: {errors.strip()[-300:]}", flush=True)
            continue
        profiles.append(summarise(name, operation, raw))
    if not result:
        raise RuntimeError("the load under the profiler did not finish")
    return profiles, result[0]


def summarise_again(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved profile re-read from its raw stacks (when they are still there), with today's buckets."""
    raw = Path(saved["raw_file"])
    return asdict(summarise(saved["process"], saved["operation"], raw)) if raw.exists() else saved


def summarise(process: str, operation: str, raw: Path) -> Profile:
    """Buckets of leaf frames, and the functions with the most self time."""
    buckets: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        leaf = stack.rsplit(";", 1)[-1]
        if POOL_THREAD in stack and leaf.startswith(WAITING):
            continue
        buckets[bucket_of(stack, leaf)] += count
        functions[leaf] += count
        inclusive.update(dict.fromkeys({without_line(frame) for frame in stack.split(";")}, count))
        total += count
    if not total:
        return Profile(process, operation, 0, {}, [], [], str(raw))
    share = {name: percent(count, total) for name, count in buckets.most_common()}
    top = [(name, percent(count, total)) for name, count in functions.most_common(12)]
    ours = [(name, percent(count, total)) for name, count in inclusive.most_common() if is_inclusive_worthy(name)]
    return Profile(process, operation, total, share, top, ours[:15], str(raw))


def without_line(frame: str) -> str:
    """`f (services/x.py:12)` -> `f (services/x.py)`: a function counts once, whichever line was running."""
    return LINE.sub(")", frame)


def is_inclusive_worthy(frame: str) -> bool:
    """Our own functions (and the rate limiter's entry points): what a design change would move."""
    if frame.startswith(("main ", "<module> ")):
        return False
    return any(place in frame for place in ("(services/", "(shared/", "(limits/aio/strategies"))


def percent(count: int, total: int) -> float:
    return round(100 * count / total, 1)


def bucket_of(stack: str, leaf: str) -> str:
    if any(marker in stack for marker in THREAD_POOL):
        return "thread pool hand-off (sync `def` dependencies)"
    for name, needles in BUCKETS:
        if any(needle in leaf for needle in needles):
            return name
    return OTHER
