"""`python -m bench` (`make bench`): load the real stack over HTTP, beside direct-write baselines, and report.

Phases, each bounded in time: our stack with one worker of each kind over every
operation and connection count (then a py-spy profile), the same stack with
more worker processes, the two baselines, and the workers alone. Output lands in
bench-results/ (JSON, PNG, service logs); docs/benchmarks.md gets the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bench.measure import fixtures, machine, plot, procs, profile, report, servers, workers
from bench.measure.load import LoadError, Plan, Target, measure, run_wrk, write_requests, wrk_path
from bench.measure.workload import OPERATIONS, SLASHED, Session, requests_for

ROOT = servers.ROOT
BASELINE_OPERATIONS = ("save", "score", "top", "read")
COMMITTED = ROOT / "bench/results"  # the figures docs/benchmarks.md shows
DOCS = ROOT / "docs/benchmarks.md"
SOAK_SAMPLE_S = 10
PHASES = ("ours", "scaling", "baselines", "workers")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Cache Quest over HTTP with wrk, beside Node/Express and FastAPI direct-write servers.",
        epilog=(
            "BENCH_URL attaches to a running gateway instead of starting one (needs REDIS_URL, for the board); "
            "REDIS_URL alone uses that Redis (disposable: the bench writes sessions, saves and a 100,000-member board)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--phases", type=phase_list, default=list(PHASES), help="phases to run, in this order")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the figure is their median)")
    parser.add_argument("--duration", type=float, default=3, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of warm-up before each operation")
    parser.add_argument("--connections", type=int_list, default=[16, 64, 256], help="connection counts")
    parser.add_argument("--operations", type=op_list, default=list(OPERATIONS), help="operations to drive")
    parser.add_argument("--workers", type=int_list, default=[1, 2, 4], help="worker process counts for scaling")
    parser.add_argument(
        "--gateway-processes", type=int_list, default=[2], help="GATEWAY_PROCESSES to try beyond 1, in scaling"
    )
    parser.add_argument("--sessions", type=int, default=512, help="sessions per server (more than connections)")
    parser.add_argument("--board-size", type=int, default=100_000, help="members on the board read by top-10")
    parser.add_argument("--events", type=int, default=20_000, help="events per run of the workers-alone benchmark")
    parser.add_argument("--baselines", type=str_list, default=["fastapi-direct", "node-express"], help="'' for none")
    parser.add_argument("--profile-seconds", type=float, default=8, help="py-spy recording under load; 0 skips")
    parser.add_argument("--soak", type=float, default=0, help="seconds of mixed load while sampling memory; 0 skips")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the services (INFO logs every request)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output folder")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md and its plot alone")
    parser.add_argument("--from-json", type=Path, help="measure nothing: report again from a saved JSON file")
    return parser.parse_args()


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def phase_list(text: str) -> list[str]:
    chosen = str_list(text)
    if set(chosen) - set(PHASES):
        raise argparse.ArgumentTypeError(f"unknown phases {sorted(set(chosen) - set(PHASES))}; choose from {PHASES}")
    return chosen


def op_list(text: str) -> list[str]:
    chosen = str_list(text)
    unknown = set(chosen) - {*OPERATIONS, *SLASHED}
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown operations {sorted(unknown)}; choose from {', '.join(OPERATIONS + SLASHED)}"
        )
    return chosen


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


class Bench:
    """One benchmark run: its settings, where it writes, and the result it builds up."""

    def __init__(self, args: argparse.Namespace, log: IO[str]) -> None:
        self.args = args
        self.log = log
        self.plan = Plan(args.runs, args.duration, args.warmup)
        self.out: Path = args.out
        self.result: report.Result = {
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "settings": {k: v for k, v in vars(args).items() if k not in {"out"}},
            "http": [], "scaling": [], "baselines": [], "workers_alone": [], "memory": {}, "profiles": [],
        }  # fmt: skip
        self.result["settings"].update(duration_s=args.duration, warmup_s=args.warmup)

    def requests_file(self, server: str, operation: str, sessions: list[Session]) -> Path:
        return write_requests(self.out / "requests" / f"{server}-{operation}.tsv", requests_for(operation, sessions))

    def drive(
        self, target: Target, operations: list[str], connections: list[int], sessions: list[Session]
    ) -> list[dict[str, object]]:
        found = []
        for operation in operations:
            requests_file = self.requests_file(target.name, operation, sessions)
            found += [cell.summary() for cell in measure(target, operation, requests_file, connections, self.plan)]
        return found

    def remember_memory(self, phase: str, watch: dict[str, int]) -> None:
        peaks = procs.snapshot(watch)
        self.result["memory"][phase] = {name: round(usage.peak_rss_kb / 1024, 1) for name, usage in peaks.items()}

    def ours(self, redis_url: str, redis_pid: int | None) -> None:
        """Every operation at every connection count, one worker of each kind; then the profile and the soak."""
        say("our stack: gateway + 1 saves + 1 leaderboard worker")
        with ExitStack() as exits:
            stack = servers.start_ours(exits, redis_url, 1, self.log, self.args.log_level)
            watch = {**servers.stack_pids(stack), **({"redis": redis_pid} if redis_pid else {})}
            target = Target("ours", stack.url, watch, workers=1, redis_url=redis_url)
            sessions = fixtures.sessions(stack.url, self.args.sessions)
            self.result["http"] = self.drive(target, self.args.operations, self.args.connections, sessions)
            self.profile(
                target,
                sessions,
                {"gateway": stack.processes["gateway-1"].pid, "saves worker": stack.processes["saves-1"].pid},
            )
            self.soak(target, sessions)
            self.remember_memory("ours, 1 worker of each", watch)
        self.result["scaling"] = [
            cell for cell in self.result["http"] if cell["operation"] in {"save", "score"} and cell["connections"] == 64
        ]

    def attached(self, url: str, redis_pid: int | None) -> None:
        say(f"attached to {url}: no scaling, profile or workers-alone phases (they need to own the processes)")
        target = Target("ours", url.rstrip("/"), {"redis": redis_pid} if redis_pid else {})
        sessions = fixtures.sessions(target.url, self.args.sessions)
        self.result["http"] = self.drive(target, self.args.operations, self.args.connections, sessions)

    def scaling(self, redis_url: str, redis_pid: int | None) -> None:
        """Saves and scores with more worker processes; every operation with more gateway processes."""
        shapes = [(1, count, ["save", "score"]) for count in self.args.workers if count != 1]
        shapes += [
            (gateways, 1, list(BASELINE_OPERATIONS)) for gateways in self.args.gateway_processes if gateways != 1
        ]
        for gateways, count, operations in shapes:
            say(f"our stack: {gateways} gateway process(es), {count} process(es) of each worker")
            with ExitStack() as exits:
                stack = servers.start_ours(exits, redis_url, count, self.log, self.args.log_level, gateways)
                watch = {**servers.stack_pids(stack), **({"redis": redis_pid} if redis_pid else {})}
                target = Target("ours", stack.url, watch, workers=count, gateways=gateways, redis_url=redis_url)
                sessions = fixtures.sessions(stack.url, self.args.sessions)
                self.result["scaling"] += self.drive(target, operations, [64], sessions)
                self.remember_memory(f"ours, {gateways} gateway(s), {count} worker(s) of each", watch)

    def profile(self, target: Target, sessions: list[Session], pids: dict[str, int]) -> None:
        """py-spy on the gateway and a saves worker under saves, then on the gateway under top-10 reads."""
        if self.args.profile_seconds <= 0:
            return
        if profile.py_spy() is None:
            say("py-spy is not installed: no profile (pip install py-spy)")
            return
        plans = {"save": pids, "top": {"gateway": pids["gateway"]}}
        for operation, profiled in plans.items():
            seconds = self.args.profile_seconds
            say(f"profiling {', '.join(profiled)} under {operation} at 64 connections ({seconds:.0f} s)")
            requests_file = self.requests_file(target.name, operation, sessions)
            found, run = profile.profile_under_load(target, operation, requests_file, profiled, seconds, self.out)
            self.result["profiles"] += [asdict(p) for p in found]
            self.result.setdefault("profiled_runs", {})[operation] = asdict(run)
            for p in found:
                print(
                    f"  {p.process}: " + ", ".join(f"{name} {share}%" for name, share in p.buckets.items()), flush=True
                )

    def soak(self, target: Target, sessions: list[Session]) -> None:
        """Mixed load for --soak seconds; resident memory of every process sampled along the way."""
        if self.args.soak <= 0:
            return
        say(f"soak: mixed load at 64 connections for {self.args.soak:.0f} s, memory sampled every {SOAK_SAMPLE_S} s")
        requests_file = self.requests_file(target.name, "mixed", sessions)
        samples: dict[str, list[float]] = {name: [] for name in target.watch}
        load = threading.Thread(target=run_wrk, args=(target.url, requests_file, 64, self.args.soak, target.watch))
        load.start()
        while load.is_alive():
            for name, usage in procs.snapshot(target.watch).items():
                samples[name].append(round(usage.rss_kb / 1024, 1))
            load.join(SOAK_SAMPLE_S)
        self.result["soak"] = {"seconds": self.args.soak, "every_s": SOAK_SAMPLE_S, "rss_mb": samples}
        for name, series in samples.items():
            if series:
                print(f"  {name}: RSS {series[0]} -> {series[-1]} MB (max {max(series)})", flush=True)

    def baselines(self, redis_url: str, redis_pid: int | None) -> None:
        starters = {"fastapi-direct": servers.start_fastapi_baseline, "node-express": servers.start_node_baseline}
        for name in self.args.baselines:
            say(f"baseline {name}: direct writes, no streams")
            with ExitStack() as exits:
                try:
                    url, pid = starters[name](exits, redis_url, self.log)
                except (servers.StartError, KeyError) as error:
                    say(f"baseline {name} skipped: {error}")
                    continue
                watch = {name: pid, **({"redis": redis_pid} if redis_pid else {})}
                target = Target(name, url, watch, redis_url=redis_url)
                if name == "node-express":
                    self.ceiling(target)
                sessions = fixtures.sessions(url, self.args.sessions)
                self.result["baselines"] += self.drive(target, list(BASELINE_OPERATIONS), [64], sessions)
                self.remember_memory(name, watch)

    def ceiling(self, target: Target) -> None:
        """wrk against an endpoint that does nothing: how far the load generator itself can go."""
        requests_file = self.requests_file(target.name, "ping", [])
        (cell,) = measure(target, "ping", requests_file, [64], self.plan)
        self.result["ceiling"] = cell.summary()

    def workers_alone(self, redis_url: str, redis_pid: int | None) -> None:
        say(f"workers alone: {self.args.events:,} events per run pushed onto the stream, then drained")
        plan = workers.DrainPlan(self.args.events, self.args.runs, self.args.log_level)
        for service in ("saves", "leaderboard"):
            for count in self.args.workers:
                cell = workers.measure(redis_url, redis_pid, service, count, plan, self.log)
                self.result["workers_alone"].append(cell.summary())

    def report(self, *, measured: bool = True) -> None:
        if measured:
            self.result["meta"]["load_average_at_end"] = machine.load_average()
            self.result["meta"]["code_at_end"] = machine.code_version(ROOT)
        saved = report.write_json(self.result, self.out)
        image = self.out / "benchmarks.png"
        if plot.available():
            plot.plot(self.result, image)
        else:
            say("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        print("\n" + report.markdown(self.result))
        say(f"figures: {saved}" + (f", plot: {image}" if image.exists() else ""))
        if not self.args.no_docs and image.exists():
            COMMITTED.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, COMMITTED / "benchmarks.png")
            if report.update_docs(DOCS, self.result, COMMITTED / "benchmarks.png"):
                say(f"updated {DOCS.relative_to(ROOT)} and {COMMITTED.relative_to(ROOT)}/")


def run(bench: Bench) -> None:
    args = bench.args
    bench_url, redis_url = os.environ.get("BENCH_URL"), os.environ.get("REDIS_URL")
    if bench_url and not redis_url:
        sys.exit("BENCH_URL needs REDIS_URL too: the bench fills the leaderboard it reads straight in Redis")
    with ExitStack() as exits:
        redis_pid = None
        if not redis_url:
            say("starting the embedded Redis (JSON + Search, append-only as in `make run`)")
            redis_url, redis_pid = servers.start_redis(exits, bench.out / "redis-data")
        bench.result["meta"] = machine.describe(redis_url, servers.NODE_BASELINE)
        say(f"{args.board_size:,} members on the board: {fixtures.fill_board(redis_url, args.board_size):,} now")
        phases = args.phases
        if bench_url:
            bench.attached(bench_url, redis_pid)
            phases = [phase for phase in phases if phase == "baselines"]
        if "ours" in phases:
            bench.ours(redis_url, redis_pid)
        if "scaling" in phases:
            bench.scaling(redis_url, redis_pid)
        if "baselines" in phases:
            bench.baselines(redis_url, redis_pid)
        if "workers" in phases:
            bench.workers_alone(redis_url, redis_pid)
    bench.report()


def main() -> None:
    args = parse_args()
    try:
        wrk_path()
    except LoadError as error:
        sys.exit(f"bench: {error}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    if args.from_json:
        again = Bench(args, sys.stdout)
        again.result = json.loads(args.from_json.read_text())
        again.result["profiles"] = [profile.summarise_again(p) for p in again.result.get("profiles", [])]
        again.report(measured=False)
        return
    started = time.monotonic()
    with open(args.out / "logs/services.log", "w") as log:
        say(f"logs of every process: {args.out / 'logs/services.log'}")
        try:
            run(Bench(args, log))
        except (LoadError, servers.StartError, RuntimeError, TimeoutError) as error:
            sys.exit(f"bench: {error}")
    say(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
