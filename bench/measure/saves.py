"""Conditional saves and merge patches beside the plain ones (the `saves` phase of `python -m bench`).

Two pairs, measured in turns so the box's noise falls on both sides alike:
  * a save (PATCH of the ~500-byte player document) without and with If-Match on the version its
    last answer named (issue 13's target: at most 10% more cost);
  * a PATCH of a ~5 KB document beside a merge patch changing ~50 bytes of it: throughput and the
    bytes each request puts on the wire.
One session per wrk thread and connection (bench/lua/saves.lua), so a session's saves go one after
another and each If-Match names the version before it, as a game tab's do. Beside throughput, the
CPU the stack spent per request (gateway, workers, Redis): on a box shared with other work it moves
less than throughput does.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench.measure import fixtures, procs
from bench.measure.load import Plan, parse, wrk_path
from bench.measure.workload import Session, player_document

LUA = Path(__file__).resolve().parents[1] / "lua/saves.lua"
WRK_TIMEOUT_S = 10
BIG_BYTES = 5 * 1024
EXAMPLE_VERSION = "1764676800000-0"  # a stream entry id of today
# operation: (its wrk mode, whether the stored document is the ~5 KB one)
OPERATIONS = {"save": ("save", False), "save-if-match": ("save-if-match", False), "patch-5k": ("save", True),
              "merge-5k": ("merge", True)}  # fmt: skip
PAIRS = (("save", "save-if-match"), ("patch-5k", "merge-5k"))


def big_document(session_id: str) -> dict[str, object]:
    """The player document grown to ~5 KB by a journal of the quest, as a long game's save would be."""
    document = player_document(session_id)
    journal: list[dict[str, object]] = []
    while len(orjson.dumps({**document, "journal": journal})) < BIG_BYTES:
        n = len(journal)
        journal.append({"day": n, "map": "Grassland", "note": f"cleared cache {n:03d} of the old ruins"})
    return {**document, "journal": journal}


def merge_patch(session_id: str) -> dict[str, object]:
    """~50 bytes that change: where the hero stands and when it was saved."""
    return {"playerData": {"id": session_id, "position": {"x": 1024.5, "y": 733.25}, "updatedAt": 1733140800000}}


def wire_bytes(url: str, cookie: str, operation: str, session_id: str) -> int:
    """The request's bytes as wrk sends it: request line, headers, body (an ETag as long as today's)."""
    mode, big = OPERATIONS[operation]
    body = orjson.dumps(merge_patch(session_id) if mode == "merge" else {"playerData": document_of(session_id, big)})
    media = "application/merge-patch+json" if mode == "merge" else "application/json"
    host = url.removeprefix("http://").rstrip("/")
    headers = [f"Host: {host}", f"Cookie: {cookie}", f"Content-Type: {media}", f"Content-Length: {len(body)}"]
    if mode == "save-if-match":
        headers.append(f'If-Match: "{EXAMPLE_VERSION}"')
    head = "PATCH /api/playerstate HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in headers) + "\r\n"
    return len(head) + len(body)


def document_of(session_id: str, big: bool) -> dict[str, object]:
    return big_document(session_id) if big else player_document(session_id)


@dataclass
class Figure:
    operation: str
    connections: int
    rps: list[float]
    p50_ms: list[float]
    p99_ms: list[float]
    cpu_ms: list[float]  # the stack's CPU per request
    failures: int
    request_bytes: int

    def summary(self) -> dict[str, object]:
        return {
            "operation": self.operation, "connections": self.connections,
            "rps": round(statistics.median(self.rps), 1), "p50_ms": statistics.median(self.p50_ms),
            "p99_ms": statistics.median(self.p99_ms), "cpu_ms_per_request": round(statistics.median(self.cpu_ms), 3),
            "runs": len(self.rps), "failures": self.failures,
            "request_bytes": self.request_bytes,
        }  # fmt: skip


def prepare(url: str, sessions: list[Session], big: bool, path: Path) -> Path:
    """Store each session's document (so every PATCH finds one) and write the file saves.lua reads,
    with each document's current ETag."""
    lines = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for session in sessions:
            headers = {"Cookie": session.cookie}
            document = document_of(session.id, big)
            client.post("/api/playerstate", json={"playerData": document}, headers=headers).raise_for_status()
            etag = client.get(f"/api/playerstate/{session.id}", headers=headers).headers["etag"]
            whole = orjson.dumps({"playerData": document})
            lines.append(
                b"\t".join((session.cookie.encode(), etag.encode(), whole, orjson.dumps(merge_patch(session.id))))
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@dataclass(frozen=True)
class Once:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    failures: int


def run_once(
    url: str, requests_file: Path, mode: str, connections: int, duration_s: float, watch: dict[str, int]
) -> Once:
    argv = [
        wrk_path(), f"-t{connections}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={WRK_TIMEOUT_S}s", "-s", str(LUA), url, "--", str(requests_file), mode,
    ]  # fmt: skip
    before = procs.snapshot(watch)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + WRK_TIMEOUT_S + 30)
    after = procs.snapshot(watch)
    run = parse(done.stdout, done.stderr, {})
    cpu_s = sum(after[name].cpu_s - before[name].cpu_s for name in after if name in before)
    cpu_ms = 1000 * cpu_s / run.requests if run.requests else 0.0
    return Once(run.rps, run.p50_ms, run.p99_ms, cpu_ms, run.errors + run.non_2xx)


def measure(url: str, watch: dict[str, int], connections: int, plan: Plan, out: Path) -> list[dict[str, object]]:
    """Each pair at `connections`, its two sides in turns, `plan.runs` runs each (after a warm-up);
    `watch`: the stack's processes, whose CPU is counted."""
    sessions = fixtures.sessions(url, connections)
    found: list[dict[str, object]] = []
    for pair in PAIRS:
        first = sessions[0]
        figures = {
            operation: Figure(
                operation, connections, [], [], [], [], 0, wire_bytes(url, first.cookie, operation, first.id)
            )
            for operation in pair
        }
        for turn in range(plan.runs + 1):
            for operation in pair:
                mode, big = OPERATIONS[operation]
                requests_file = prepare(url, sessions, big, out / "requests" / f"saves-{operation}.tsv")
                seconds = plan.warmup_s if turn == 0 else plan.duration_s
                once = run_once(url, requests_file, mode, connections, seconds, watch)
                if turn == 0:
                    continue  # the warm-up
                figure = figures[operation]
                figure.rps.append(once.rps)
                figure.p50_ms.append(once.p50_ms)
                figure.p99_ms.append(once.p99_ms)
                figure.cpu_ms.append(once.cpu_ms)
                figure.failures += once.failures
        for figure in figures.values():
            summary = figure.summary()
            failed = f"  ({figure.failures} failed)" if figure.failures else ""
            print(
                f"  {figure.operation:<14} c={connections:<3} {summary['rps']:>8.0f} req/s"
                f"  p50 {summary['p50_ms']:6.1f}  p99 {summary['p99_ms']:6.1f} ms"
                f"  {summary['cpu_ms_per_request']:.3f} CPU ms/request"
                f"  {figure.request_bytes:>5} B/request{failed}",
                flush=True,
            )
            found.append(summary)
    return found
