"""`python -m bench` (`make bench`): load the real stack over HTTP, beside direct-write baselines, and report.

Phases, each bounded in time: our stack with one worker of each kind over every
operation and connection count (then a py-spy profile), the same stack with
more worker processes, the two baselines, the workers alone, costly saves, and
the live fan-out (event-stream listeners on one gateway process); with
`--compare REF`, first our stack beside another git revision of it, the two
measured in turns. Output lands in bench-results/ (JSON, PNG, service logs);
docs/benchmarks.md gets the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from bench.measure import (
    beside,
    costly,
    fixtures,
    live,
    machine,
    plot,
    procs,
    profile,
    report,
    revisions,
    servers,
    workers,
)
from bench.measure import saves as conditional_saves
from bench.measure.load import Cell, LoadError, Plan, Run, Target, measure, run_wrk, write_requests, wrk_path
from bench.measure.workload import BOARD, OPERATIONS, SLASHED, Session, requests_for
from devtools import redis_cluster
from devtools.stack import CLUSTER_PARTITIONS

ROOT = servers.ROOT
BASELINE_OPERATIONS = ("save", "score", "top", "read")
COMMITTED = ROOT / "bench/results"  # the figures docs/benchmarks.md shows
DOCS = ROOT / "docs/benchmarks.md"
SOAK_SAMPLE_S = 10
PHASES = ("ours", "scaling", "cluster", "durability", "baselines", "workers", "costly", "metrics", "saves", "live")
# The cluster phase's stacks: (topology, stream partitions, processes of each worker), one Redis first.
# A cluster of one master tells the cluster's own cost from that of three servers sharing the cores.
ONE_MASTER, THREE_MASTERS = "cluster of one master", "cluster"
CLUSTER_SHAPES = (
    (report.ONE_REDIS, 1, 1),
    (ONE_MASTER, 1, 1),
    (THREE_MASTERS, 1, 1),
    (THREE_MASTERS, 3, 1),
    (THREE_MASTERS, 6, 1),
    (THREE_MASTERS, 6, 2),
)
CLUSTER_OPERATIONS = ["save", "score", "read", "top"]
DURABILITY_OPERATIONS = ["save", "score"]
COMPARE = "compare"  # not a default phase: --compare REF adds it
PHASE_SECTIONS = ("http", "scaling", "baselines", "workers_alone")  # where the other phases' figures go
DEFAULT_CONNECTIONS = [16, 64, 256]
COMPARE_CONNECTIONS = [64]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Cache Quest over HTTP with wrk, beside Node/Express and FastAPI direct-write servers.",
        epilog=(
            "BENCH_URL attaches to a running gateway instead of starting one (needs REDIS_URL, for the board); "
            "REDIS_URL alone uses that Redis (disposable: the bench writes sessions, saves and a board of a million)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--phases", type=phase_list, default=list(PHASES), help=f"phases to run, in this order ({COMPARE!r} first)"
    )
    parser.add_argument(
        "--compare",
        metavar="REF",
        help=f"a git revision (main, HEAD~3, a commit id) to measure beside ours, in turns: adds the {COMPARE} phase",
    )
    parser.add_argument(
        "--compare-cluster",
        action="store_true",
        help=f"the {COMPARE} phase with each side on a three-master Redis Cluster of its own, with "
        f"STREAM_PARTITIONS={CLUSTER_PARTITIONS} (as `make run-cluster`), not on one Redis",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help=f"runs per figure (the figure is their median; {COMPARE}: per side, ≥ 2)"
    )
    parser.add_argument("--duration", type=float, default=3, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of warm-up before each operation")
    parser.add_argument(
        "--connections",
        type=int_list,
        default=DEFAULT_CONNECTIONS,
        help=f"connection counts ({COMPARE}: {COMPARE_CONNECTIONS[0]} unless given)",
    )
    parser.add_argument(
        "--operations", type=op_list, default=list(OPERATIONS), help=f"operations to drive (also: {', '.join(SLASHED)})"
    )
    parser.add_argument("--workers", type=int_list, default=[1, 2, 4], help="worker process counts for scaling")
    parser.add_argument(
        "--gateway-processes", type=int_list, default=[2], help="GATEWAY_PROCESSES to try beyond 1, in scaling"
    )
    parser.add_argument("--sessions", type=int, default=512, help="sessions per server (more than connections)")
    parser.add_argument(
        "--board-size", type=int, default=1_000_000, help="members on the board read by top-10, me and page"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per run of the workers-alone benchmark")
    parser.add_argument("--baselines", type=str_list, default=["fastapi-direct", "node-express"], help="'' for none")
    parser.add_argument("--profile-seconds", type=float, default=8, help="py-spy recording under load; 0 skips")
    parser.add_argument(
        "--costly-seconds", type=float, default=10, help="victim's saves alone, then under attack (costly phase)"
    )
    parser.add_argument("--soak", type=float, default=0, help="seconds of mixed load while sampling memory; 0 skips")
    parser.add_argument("--live-listeners", type=int, default=2000, help="event-stream listeners on one gateway (live)")
    parser.add_argument(
        "--live-generators", type=int, default=2, help="processes holding them; measured again with twice as many"
    )
    parser.add_argument("--live-rounds", type=int, default=20, help="new leaders posted, one at a time (live)")
    parser.add_argument(
        "--live-idle-seconds", type=float, default=15, help="listeners idle while the gateway's CPU is read (live)"
    )
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the services (INFO logs every request)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output folder")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md and its plot alone")
    parser.add_argument("--from-json", type=Path, help="measure nothing: report again from a saved JSON file")
    args = parser.parse_args()
    if args.compare and COMPARE not in args.phases:
        args.phases.append(COMPARE)
    if COMPARE in args.phases and not args.compare:
        parser.error(f"the {COMPARE} phase needs --compare REF")
    if args.compare_cluster and not args.compare:
        parser.error("--compare-cluster needs --compare REF")
    if COMPARE in args.phases and args.runs < 2:
        parser.error(f"the {COMPARE} phase needs --runs 2 or more: its noise is the spread of each side's runs")
    # argparse hands a non-string default over as the very same object: `is` tells it from a given list.
    args.compare_connections = COMPARE_CONNECTIONS if args.connections is DEFAULT_CONNECTIONS else args.connections
    return args


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def phase_list(text: str) -> list[str]:
    chosen = str_list(text)
    known = (*PHASES, COMPARE)
    if set(chosen) - set(known):
        raise argparse.ArgumentTypeError(f"unknown phases {sorted(set(chosen) - set(known))}; choose from {known}")
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


@dataclass(frozen=True)
class Shape:
    """A stack to measure in a phase of shapes: what the log says, what its figures are filed with,
    the Redis it runs on, the Redis processes to watch, its workers of each service, its settings."""

    described: str
    shape: Mapping[str, object]
    redis_url: str
    redis_pids: dict[str, int]
    workers: int
    settings: dict[str, str]


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
        self.revision = revisions.resolve(args.compare) if args.compare else None

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
            sessions = fixtures.sessions(stack.url, self.args.sessions, redis_url)
            self.result["http"] = self.drive(target, self.args.operations, self.args.connections, sessions)
            self.profile(
                target,
                sessions,
                {
                    "gateway": stack.processes["gateway-1"].pid,
                    "saves worker": stack.processes["saves-1"].pid,
                    "leaderboard worker": stack.processes["leaderboard-1"].pid,
                },
            )
            self.soak(target, sessions)
            self.remember_memory("ours, 1 worker of each", watch)
        self.result["scaling"] = [
            cell for cell in self.result["http"] if cell["operation"] in {"save", "score"} and cell["connections"] == 64
        ]

    def attached(self, url: str, redis_url: str, redis_pid: int | None) -> None:
        say(f"attached to {url}: no scaling, profile, workers-alone or compare phases (they need to own the processes)")
        target = Target("ours", url.rstrip("/"), {"redis": redis_pid} if redis_pid else {})
        sessions = fixtures.sessions(target.url, self.args.sessions, redis_url)
        self.result["http"] = self.drive(target, self.args.operations, self.args.connections, sessions)

    def compare(self, revision: revisions.Revision, redis_url: str, redis_pid: int | None) -> None:
        """Ours beside another revision, each stack on a Redis of its own, the two measured in turns."""
        log_path = self.out / "logs" / f"compare-{revision.short}.log"
        with open(log_path, "w") as ref_log, ExitStack() as exits:
            try:
                ref, ref_sessions, ref_code = self.start_revision(exits, revision, ref_log)
            except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
                exits.close()  # its processes stopped: the log holds everything they said
                why = f"{error}{last_words(log_path)}"
                say(f"{COMPARE} skipped: {revision.label} did not start: {why} (log: {log_path})")
                return
            if self.args.compare_cluster:
                redis_url, redis_pids, settings = self.compare_redis(exits, self.out / COMPARE / "ours")
                say("our stack beside it, on a cluster of its own: gateway + 1 saves + 1 leaderboard worker")
            else:
                redis_pids, settings = ({"redis": redis_pid} if redis_pid else {}), {}
                say("our stack beside it, on the first Redis: gateway + 1 saves + 1 leaderboard worker")
            stack = servers.start_ours(exits, redis_url, 1, self.log, self.args.log_level, settings=settings)
            watch = {**servers.stack_pids(stack), **redis_pids}
            ours = Target("ours", stack.url, watch, workers=1, redis_url=redis_url)
            our_sessions = fixtures.sessions(stack.url, self.args.sessions, redis_url)
            pairs = self.in_turns(ours, our_sessions, ref, ref_sessions)
        self.result["compare"] = {
            "ref": revision.name, "label": revision.label, "commit": revision.commit, "code": ref_code,
            "pairs": [pair.summary() for pair in pairs], "cluster": self.args.compare_cluster,
        }  # fmt: skip

    def in_turns(
        self, ours: Target, our_sessions: list[Session], ref: Target, ref_sessions: list[Session]
    ) -> list[beside.Pair]:
        """Every operation on both stacks, each sent requests made from its own sessions."""
        connections = self.args.compare_connections
        say(
            f"ours beside {ref.name}: {', '.join(self.args.operations)} at {', '.join(map(str, connections))} "
            f"connections, {self.plan.runs} runs of {self.plan.duration_s:g} s each, taking turns"
        )
        pairs = []
        for operation in self.args.operations:
            ours_side = beside.Side(ours, self.requests_file("compare-ours", operation, our_sessions))
            ref_side = beside.Side(ref, self.requests_file("compare-ref", operation, ref_sessions))
            pairs += beside.measure(ours_side, ref_side, operation, connections, self.plan)
        return pairs

    def start_revision(
        self, exits: ExitStack, revision: revisions.Revision, log: IO[str]
    ) -> tuple[Target, list[Session], str]:
        """Its checkout, a second embedded Redis and its stack, healthy; its target, sessions and code version.

        The second Redis keeps the two stacks apart: they use the same keys, streams and groups.
        """
        folder = self.out / COMPARE
        say(f"checking {revision.label} out into {folder / 'checkout'} (removed at the end)")
        checkout = revisions.check_out(exits, revision, folder / "checkout")
        redis_url, redis_pids, settings = self.compare_redis(exits, folder / revision.short)
        say(f"{revision.short}'s gateway + 1 saves + 1 leaderboard worker, run from its checkout")
        stack = servers.start_ours(exits, redis_url, 1, log, self.args.log_level, root=checkout, settings=settings)
        watch = {**servers.stack_pids(stack), **redis_pids}
        target = Target(revision.name, stack.url, watch, workers=1, redis_url=redis_url)
        return target, fixtures.sessions(stack.url, self.args.sessions, redis_url), machine.code_version(checkout)

    def compare_redis(self, exits: ExitStack, folder: Path) -> tuple[str, dict[str, int], dict[str, str]]:
        """A Redis of one side of the compare phase alone, with its board filled: its URL, its processes to
        watch and the stack's settings. An embedded Redis; with --compare-cluster, a three-master cluster
        and `make run-cluster`'s partitions."""
        if self.args.compare_cluster:
            say(f"a three-master Redis Cluster in {folder}, and its {self.args.board_size:,}-member board")
            nodes = exits.enter_context(redis_cluster.running(redis_cluster.spare_ports(), folder / "redis-cluster"))
            fixtures.fill_board(nodes.url, self.args.board_size)
            return nodes.url, servers.cluster_pids(nodes), {"STREAM_PARTITIONS": CLUSTER_PARTITIONS}
        say(f"an embedded Redis in {folder}, and its {self.args.board_size:,}-member board")
        redis_url, redis_pid = servers.start_redis(exits, folder / "redis-data")
        fixtures.fill_board(redis_url, self.args.board_size)
        return redis_url, {"redis": redis_pid}, {}

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

    def cluster(self, redis_url: str, redis_pid: int | None) -> None:
        """Saves, scores, reads and the top 10 at 64 connections on a local 3-master Redis Cluster (as
        `make run-cluster` starts it) beside one Redis, in one run; the cluster with more partitions and workers."""
        with ExitStack() as exits:
            say("a local Redis Cluster of three masters and one of one master, beside one Redis")
            nodes = exits.enter_context(redis_cluster.running(redis_cluster.spare_ports(), self.out / "redis-cluster"))
            one_master_url, one_master_pid = servers.start_one_master_cluster(exits, self.out / "one-master")
            for url in (nodes.url, one_master_url):
                fixtures.fill_board(url, self.args.board_size)
            redis_of = {
                report.ONE_REDIS: (redis_url, {"redis": redis_pid} if redis_pid else {}),
                ONE_MASTER: (one_master_url, {"redis": one_master_pid}),
                THREE_MASTERS: (nodes.url, servers.cluster_pids(nodes)),
            }
            shapes = []
            for topology, partitions, workers in CLUSTER_SHAPES:
                url, redis_pids = redis_of[topology]
                settings = {"STREAM_PARTITIONS": str(partitions)}
                described = f"{topology}: STREAM_PARTITIONS={partitions}, {workers} process(es) of each worker"
                shape = {"topology": topology, "partitions": partitions}
                shapes.append(Shape(described, shape, url, redis_pids, workers, settings))
            self.shapes_in_turns("cluster", CLUSTER_OPERATIONS, shapes)

    def durability(self) -> None:
        """Saves and scores with DURABILITY=replicated beside local, on one Redis with a replica and on a
        three-master cluster with a replica each (as `EMBEDDED_CLUSTER_REPLICAS=1 make run-cluster`)."""
        with ExitStack() as exits:
            say("one Redis with a replica, and a cluster of three masters with a replica each")
            primary_url, primary_pid = servers.start_redis(exits, self.out / "durability/primary")
            replica_pid = servers.start_replica(exits, primary_url, self.out / "durability/replica")
            ports = redis_cluster.spare_ports(redis_cluster.nodes_for(1))
            nodes = exits.enter_context(redis_cluster.running(ports, self.out / "durability/cluster", replicas=1))
            topologies = [
                ("one Redis + replica", primary_url, 1, {"redis": primary_pid, "replica": replica_pid}),
                ("cluster + replicas", nodes.url, 6, servers.cluster_pids(nodes)),
            ]
            shapes = []
            for topology, url, partitions, redis_pids in topologies:
                fixtures.fill_board(url, min(self.args.board_size, 100_000))
                for durability in ("local", "replicated"):
                    shape = {"topology": topology, "durability": durability}
                    settings = {"STREAM_PARTITIONS": str(partitions), "DURABILITY": durability}
                    shapes.append(Shape(f"{topology}: DURABILITY={durability}", shape, url, redis_pids, 1, settings))
            self.shapes_in_turns("durability", DURABILITY_OPERATIONS, shapes)

    def shapes_in_turns(self, section: str, operations: list[str], shapes: list[Shape]) -> None:
        """Our stack in each shape, its operations at 64 connections, each figure filed under `section`
        with the shape it was measured in. The shapes take turns: each round starts every shape's stack
        afresh and runs each operation once, so the box's drift over the phase (its speed changed by a
        third within minutes here) falls on every shape alike, and the ratios between shapes hold; each
        figure is the median of `--runs` rounds. Each round starts one shape further on, so no shape is
        always the first after a stack's start-up (or the last); a shape's runs stay in round order,
        for the report's ratios round by round."""
        once = replace(self.plan, runs=1)
        runs: dict[tuple[int, str], list[Run]] = {}
        for round_number in range(1, self.plan.runs + 1):
            first = (round_number - 1) % len(shapes)
            for index in [*range(first, len(shapes)), *range(first)]:
                shape = shapes[index]
                say(f"round {round_number} of {self.plan.runs}, {shape.described}")
                with ExitStack() as exits:
                    stack = servers.start_ours(
                        exits, shape.redis_url, shape.workers, self.log, self.args.log_level, settings=shape.settings
                    )
                    watch = {**servers.stack_pids(stack), **shape.redis_pids}
                    target = Target("ours", stack.url, watch, workers=shape.workers, redis_url=shape.redis_url)
                    sessions = fixtures.sessions(stack.url, self.args.sessions, shape.redis_url)
                    for operation in operations:
                        requests_file = self.requests_file(target.name, operation, sessions)
                        (cell,) = measure(target, operation, requests_file, [64], once)
                        runs.setdefault((index, operation), []).extend(cell.runs)
        for index, shape in enumerate(shapes):
            for operation in operations:
                cell = Cell("ours", operation, 64, shape.workers, runs[(index, operation)])
                self.result.setdefault(section, []).append({**cell.summary(), **shape.shape})

    def profile(self, target: Target, sessions: list[Session], pids: dict[str, int]) -> None:
        """py-spy on the gateway and a saves worker under saves, on the gateway under top-10 reads, then on
        every process under mixed (where the workers' share decides the rate)."""
        if self.args.profile_seconds <= 0:
            return
        if profile.py_spy() is None:
            say("py-spy is not installed: no profile (pip install py-spy)")
            return
        saves = {name: pids[name] for name in ("gateway", "saves worker")}
        plans = {"save": saves, "top": {"gateway": pids["gateway"]}, "mixed": pids}
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

    def costly(self, redis_url: str) -> None:
        """A player's saves alone, then while others send the costliest saves the limits allow."""
        seconds = self.args.costly_seconds
        say(f"costly saves: a victim's saves alone, then beside {costly.ATTACKERS} attackers ({seconds:.0f} s each)")
        with ExitStack() as exits:
            stack = servers.start_ours(exits, redis_url, 1, self.log, self.args.log_level, write_limits=True)
            found = costly.measure(stack.url, seconds)
        self.result["costly"] = found
        print(f"  alone: {found['alone']}\n  attacked: {found['attacked']}\n  attackers: {found['attackers_answers']}")

    def metrics_cost(self, redis_url: str, redis_pid: int | None) -> None:
        """The gateway counting its HTTP metrics beside one that does not (HTTP_METRICS=false), in turns.

        One Redis and one set of workers serve both gateways: only the gateway differs, and only one
        of the two is loaded at a time.
        """
        operations = [op for op in self.args.operations if op in BASELINE_OPERATIONS] or list(BASELINE_OPERATIONS)
        connections = self.args.compare_connections
        say(f"HTTP metrics on beside off: {', '.join(operations)}, {self.plan.runs} runs a side, taking turns")
        with ExitStack() as exits:
            stack = servers.start_ours(exits, redis_url, 1, self.log, self.args.log_level)
            off_url = servers.add_gateway(stack, "gateway-metrics-off", HTTP_METRICS="false")
            extra = {"redis": redis_pid} if redis_pid else {}
            workers = {name: pid for name, pid in servers.stack_pids(stack).items() if not name.startswith("gateway")}
            gateway = {"gateway": stack.processes["gateway-1"].pid}
            off_gateway = {"gateway": stack.processes["gateway-metrics-off"].pid}
            on = Target("metrics on", stack.url, {**gateway, **workers, **extra}, workers=1, redis_url=redis_url)
            off = Target("metrics off", off_url, {**off_gateway, **workers, **extra}, workers=1, redis_url=redis_url)
            sessions = fixtures.sessions(stack.url, self.args.sessions)  # one Redis: valid on both gateways
            pairs = []
            for operation in operations:
                requests_file = self.requests_file("metrics", operation, sessions)
                on_side, off_side = beside.Side(on, requests_file), beside.Side(off, requests_file)
                pairs += beside.measure(on_side, off_side, operation, connections, self.plan)
        self.result["metrics_cost"] = {"pairs": [pair.summary() for pair in pairs]}

    def saves(self, redis_url: str, redis_pid: int | None) -> None:
        """Saves with If-Match beside saves without; a merge patch of a 5 KB save beside a full PATCH."""
        connections = 16
        say(f"saves: with and without If-Match, merge patch beside full PATCH, at {connections} connections")
        with ExitStack() as exits:
            stack = servers.start_ours(exits, redis_url, 1, self.log, self.args.log_level)
            watch = {**servers.stack_pids(stack), **({"redis": redis_pid} if redis_pid else {})}
            self.result["saves"] = conditional_saves.measure(stack.url, watch, connections, self.plan, self.out)

    def live(self, redis_url: str) -> None:
        """Listeners on one gateway process, new leaders posted: time until every listener has each."""
        args = self.args
        count = args.live_listeners
        room = str(2 * count)  # every listener comes from 127.0.0.1
        settings = {"LIVE_MAX_PER_ADDRESS": room, "LIVE_MAX_LISTENERS": room, "MAX_CONNECTIONS": str(count + 4096)}
        with ExitStack() as exits:
            stack = servers.start_ours(exits, redis_url, 1, self.log, args.log_level, settings=settings)
            gateway_pid = stack.processes["gateway-1"].pid
            found = []
            for generators in (args.live_generators, 2 * args.live_generators):
                say(
                    f"live: {count:,} listeners held by {generators} processes on one gateway process, "
                    f"{args.live_idle_seconds:.0f} s idle, then {args.live_rounds} new leaders"
                )
                split = live.Split(count, generators)
                figures = live.measure(stack.url, BOARD, gateway_pid, split, args.live_rounds, args.live_idle_seconds)
                print(f"  {figures}", flush=True)
                found.append(live.summary(figures))
        self.result["live"] = found

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
        if self.args.no_docs or not image.exists():
            return
        if not any(self.result.get(section) for section in PHASE_SECTIONS):
            say(f"{DOCS.relative_to(ROOT)} left alone: its figures come from the other phases, and none of them ran")
            return
        COMMITTED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, COMMITTED / "benchmarks.png")
        if report.update_docs(DOCS, self.result, COMMITTED / "benchmarks.png"):
            say(f"updated {DOCS.relative_to(ROOT)} and {COMMITTED.relative_to(ROOT)}/")


def last_words(log_path: Path) -> str:
    """`: ` and the log's last line (a service that refuses to start says why in one), if any."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1]}" if lines else ""


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
            bench.attached(bench_url, redis_url, redis_pid)
            phases = [phase for phase in phases if phase == "baselines"]
        if bench.revision and COMPARE in phases:
            bench.compare(bench.revision, redis_url, redis_pid)
        if "ours" in phases:
            bench.ours(redis_url, redis_pid)
        if "scaling" in phases:
            bench.scaling(redis_url, redis_pid)
        if "cluster" in phases:
            bench.cluster(redis_url, redis_pid)
        if "durability" in phases:
            bench.durability()
        if "baselines" in phases:
            bench.baselines(redis_url, redis_pid)
        if "workers" in phases:
            bench.workers_alone(redis_url, redis_pid)
        if "live" in phases:
            bench.live(redis_url)
        if "costly" in phases:
            bench.costly(redis_url)
        if "metrics" in phases:
            bench.metrics_cost(redis_url, redis_pid)
        if "saves" in phases:
            bench.saves(redis_url, redis_pid)
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
