"""Driving a server with wrk: one run, and a cell (an operation at a connection count) as a median of runs.

wrk is closed-loop: each connection sends its next request when the previous
answer arrives, so latency and throughput are measured together. Its timeout is
raised above the gateway's own (5 s + grace) so slow answers are counted, not dropped.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.measure import persistence, procs
from bench.measure.workload import Request

LUA = Path(__file__).resolve().parents[1] / "lua/replay.lua"
WRK_TIMEOUT_S = 10
WRK_THREADS = 2  # one per core: the box has two


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Run:
    """One wrk run: throughput, latency percentiles in ms, failures, and where the CPU went."""

    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    cpu: dict[str, float] = field(default_factory=dict)
    redis_forks: int = 0  # AOF rewrites and other forks of Redis during the run (bench/measure/persistence.py)


@dataclass(frozen=True)
class Cell:
    """The median of several runs of one operation against one server at one connection count."""

    server: str
    operation: str
    connections: int
    workers: int
    runs: list[Run]
    gateways: int = 1

    def median(self, metric: str) -> float:
        return float(statistics.median(getattr(run, metric) for run in self.runs))

    def summary(self) -> dict[str, object]:
        metrics = ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")
        return {
            "server": self.server,
            "operation": self.operation,
            "connections": self.connections,
            "workers": self.workers,
            "gateways": self.gateways,
            **{metric: round(self.median(metric), 2) for metric in metrics},
            "errors": sum(run.errors for run in self.runs),
            "non_2xx": sum(run.non_2xx for run in self.runs),
            "redis_forks": sum(run.redis_forks for run in self.runs),
            "cpu_percent": median_shares([run.cpu for run in self.runs]),
            "cpu_ms_per_request": self.cpu_ms_per_request(),
            "runs": [asdict(run) for run in self.runs],
        }

    def cpu_ms_per_request(self) -> dict[str, float]:
        """CPU milliseconds each server-side process spends per request: steadier than req/s on a busy box."""
        shares = median_shares([run.cpu for run in self.runs])
        rps = self.median("rps")
        per_process = {name: round(10 * share / rps, 3) for name, share in shares.items() if name not in NOT_SERVER}
        return {**per_process, "total": round(sum(per_process.values()), 3)} if rps else {}


NOT_SERVER = {"wrk", "everything else", procs.STOLEN}


def median_shares(shares: list[dict[str, float]]) -> dict[str, float]:
    names = {name for share in shares for name in share}
    return {name: round(statistics.median(s.get(name, 0.0) for s in shares), 1) for name in sorted(names)}


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError("wrk is not installed: `apt-get install -y wrk` (as root), then run again")
    return found


def write_requests(path: Path, requests: list[Request]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(request.line() for request in requests))
    return path


def run_wrk(
    url: str,
    requests_file: Path,
    connections: int,
    duration_s: float,
    watch: dict[str, int],
    redis_url: str | None = None,
) -> Run:
    """One bounded wrk run; CPU shares of the watched processes and of wrk itself over the run."""
    threads = min(WRK_THREADS, connections)
    seconds = max(1, round(duration_s))  # wrk counts whole seconds
    argv = [
        wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s",
        "-s", str(LUA), url, "--", str(requests_file), str(threads),
    ]  # fmt: skip
    forks_before = persistence.forks(redis_url)
    before, started = procs.snapshot(watch), time.monotonic()
    wrk_cpu_before, machine_before = procs.children_cpu_s(), procs.machine_time()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + WRK_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired as error:
        raise LoadError(f"wrk did not finish: {' '.join(argv)}") from error
    wall_s = time.monotonic() - started
    cpu = procs.cpu_shares(before, procs.snapshot(watch), wall_s)
    cpu["wrk"] = round(100 * (procs.children_cpu_s() - wrk_cpu_before) / wall_s, 1)
    # Whatever else ran on the box meanwhile (other jobs, this script, the host): the noise in the figure.
    cpu |= procs.noise(machine_before, procs.machine_time(), wall_s, cpu)
    return replace(parse(done.stdout, done.stderr, cpu), redis_forks=persistence.forks(redis_url) - forks_before)


def parse(stdout: str, stderr: str, cpu: dict[str, float]) -> Run:
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if line is None:
        raise LoadError(f"wrk printed no result: {stdout[-500:]} {stderr[-500:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return Run(
        requests=raw["requests"],
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        non_2xx=raw["non_2xx"],
        cpu=cpu,
    )


@dataclass(frozen=True)
class Plan:
    """How every cell is measured: its runs, their length, and a warm-up before the first."""

    runs: int
    duration_s: float
    warmup_s: float


@dataclass(frozen=True)
class Target:
    """A server under load: its name in the report, its URL, the processes to watch, its worker count."""

    name: str
    url: str
    watch: dict[str, int]
    workers: int = 0
    gateways: int = 1
    redis_url: str | None = None  # to wait out Redis's forks between figures and count them


def measure(target: Target, operation: str, requests_file: Path, connections: list[int], plan: Plan) -> list[Cell]:
    """One operation at each connection count, after one warm-up run whose figures are dropped.

    Each connection count starts once Redis has no fork running from the load before.
    """
    if plan.warmup_s > 0:
        persistence.wait_until_quiet(target.redis_url)
        run_wrk(target.url, requests_file, connections[0], plan.warmup_s, target.watch)
    cells = []
    for count in connections:
        persistence.wait_until_quiet(target.redis_url)
        runs = [
            run_wrk(target.url, requests_file, count, plan.duration_s, target.watch, target.redis_url)
            for _ in range(plan.runs)
        ]
        cell = Cell(target.name, operation, count, target.workers, runs, target.gateways)
        print(one_line(cell), flush=True)
        cells.append(cell)
    return cells


def one_line(cell: Cell) -> str:
    failures = sum(run.errors + run.non_2xx for run in cell.runs)
    note = f"  ({failures} failed)" if failures else ""
    forks = sum(run.redis_forks for run in cell.runs)
    note += f"  ({forks} Redis forks)" if forks else ""
    return (
        f"  {cell.server:<15} {cell.operation:<6} c={cell.connections:<4} w={cell.workers} g={cell.gateways}  "
        f"{cell.median('rps'):>8.0f} req/s  p50 {cell.median('p50_ms'):6.1f}  p95 {cell.median('p95_ms'):6.1f}  "
        f"p99 {cell.median('p99_ms'):6.1f}  max {cell.median('max_ms'):7.1f} ms{note}"
    )
