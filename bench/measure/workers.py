"""The workers alone: N events pushed straight onto a stream, timed until every reply is written.

The workers are paused (SIGSTOP) while the backlog is written, then resumed. The
clock runs from SIGCONT to the newest reply, both read on Redis's clock (TIME,
and the reply's stream id), so the wait for the group to hold nothing pending
can poll slowly: a 5 ms poll took 10-19% of a core from the two it measures.
The replies are counted afterwards, to prove every event was answered. Writing
the backlog first keeps the producer's CPU out of a two-core measurement.
Redis's own counters, read before and after, say where its time per event went.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import orjson
import redis

from bench.measure import persistence, procs
from bench.measure.load import median_shares
from bench.measure.servers import free_port, service_env
from bench.measure.workload import BOARD, player_document
from devtools.stack import Stack
from shared import keys
from shared.protocol import SAVES, SCORES, CommandStream, Event, EventType

DEADLINE_MS = 600_000  # far past the run: nothing may expire while the backlog waits
PARTITION = 0  # the bench's services run with one partition (STREAM_PARTITIONS=1)
PUSH_CHUNK = 2_000
POLL_S = 0.1
DOCUMENTS = 1_000
SERVICES = {"saves": SAVES, "leaderboard": SCORES}


@dataclass(frozen=True)
class DrainRun:
    events: int
    seconds: float
    events_per_s: float
    replies_ok: int
    cpu_percent: dict[str, float]  # per process while draining, as in the HTTP runs
    redis_forks: int = 0  # AOF rewrites and other forks of Redis during the drain
    redis_cpu_us_per_event: float = 0.0  # Redis's main thread: commands, I/O, AOF writes (INFO cpu)
    redis_us_per_event: dict[str, float] = field(default_factory=dict)  # by command (INFO commandstats)


@dataclass(frozen=True)
class DrainPlan:
    events: int
    runs: int
    log_level: str


@dataclass(frozen=True)
class DrainCell:
    service: str
    processes: int
    runs: list[DrainRun]
    peak_rss_mb: dict[str, float]

    def events_per_s(self) -> float:
        return float(statistics.median(run.events_per_s for run in self.runs))

    def cpu_percent(self) -> dict[str, float]:
        return median_shares([run.cpu_percent for run in self.runs])

    def redis_us_per_event(self) -> dict[str, float]:
        """The median over the runs of Redis's time per event, by command."""
        commands = {name for run in self.runs for name in run.redis_us_per_event}
        medians = {
            name: statistics.median(run.redis_us_per_event.get(name, 0.0) for run in self.runs) for name in commands
        }
        return {name: round(us, 1) for name, us in sorted(medians.items(), key=lambda item: -item[1])}

    def worker_cpu_us_per_event(self) -> float:
        """CPU microseconds the workers spent per event: 1e6 / this is what one busy core could drain."""
        worker_share = sum(share for name, share in self.cpu_percent().items() if name.startswith(self.service))
        return round(worker_share / 100 / self.events_per_s() * 1e6, 1) if self.events_per_s() else 0.0

    def summary(self) -> dict[str, object]:
        total = self.events_per_s()
        cost = self.worker_cpu_us_per_event()
        return {
            "service": self.service,
            "processes": self.processes,
            "events_per_s": round(total),
            "events_per_s_per_process": round(total / self.processes),
            "cpu_percent": self.cpu_percent(),
            "worker_cpu_us_per_event": cost,
            "events_per_busy_core_s": round(1e6 / cost) if cost else 0,
            "peak_rss_mb": self.peak_rss_mb,
            "redis_forks": sum(run.redis_forks for run in self.runs),
            "redis_cpu_us_per_event": round(statistics.median(run.redis_cpu_us_per_event for run in self.runs), 1),
            "redis_us_per_event": self.redis_us_per_event(),
            "runs": [asdict(run) for run in self.runs],
        }


def player_ids(client: redis.Redis, count: int) -> list[str]:
    """Players that exist, so every `player.update` really writes (a missing one answers 404)."""
    ids = [os.urandom(16).hex() for _ in range(count)]
    with client.pipeline(transaction=False) as pipe:
        for player_id in ids:
            pipe.execute_command("JSON.SET", keys.player(player_id), "$", orjson.dumps(player_document(player_id)))
        pipe.execute()
    return ids


def backlog(service: str, ids: list[str], count: int) -> list[Event]:
    if service == "saves":
        return [
            Event.new(EventType.PLAYER_UPDATE, player_id, player_document(player_id, n), DEADLINE_MS, PARTITION)
            for n, player_id in zip(range(count), cycle_of(ids), strict=False)
        ]
    return [
        Event.new(
            EventType.SCORE_SUBMIT, pid, {"key": BOARD, "score": n, "member": f"Drain-{pid}"}, DEADLINE_MS, PARTITION
        )
        for n, pid in zip(range(count), cycle_of(ids), strict=False)
    ]


def cycle_of(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


def push(client: redis.Redis, route: CommandStream, events: list[Event]) -> bytes:
    """Append the events in pipelined chunks; the id of the last entry."""
    last = b""
    for start in range(0, len(events), PUSH_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for event in events[start : start + PUSH_CHUNK]:
                pipe.xadd(route.key(PARTITION), event.encode())  # type: ignore[arg-type]
            last = pipe.execute()[-1]
    return last


def drained(client: redis.Redis, route: CommandStream, last_id: bytes) -> bool:
    for group in client.xinfo_groups(route.key(PARTITION)):
        if as_text(group["name"]) == route.group:
            return as_text(group["last-delivered-id"]) == as_text(last_id) and int(group["pending"]) == 0
    return False


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def replies(client: redis.Redis, events: list[Event]) -> tuple[int, int]:
    """How many events have a 200 reply on their reply stream, and when (Redis ms) the newest was written."""
    ok, newest_ms = 0, 0
    for start in range(0, len(events), PUSH_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for event in events[start : start + PUSH_CHUNK]:
                pipe.xrange(event.reply_to, count=1)
            for entries in pipe.execute():
                if entries:
                    reply_id, fields = entries[0]
                    ok += fields[b"status"] == b"200"
                    newest_ms = max(newest_ms, int(reply_id.split(b"-")[0]))
    return ok, newest_ms


def redis_time_ms(client: redis.Redis) -> int:
    seconds, microseconds = client.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


def command_usec(client: redis.Redis) -> dict[str, int]:
    """Microseconds Redis has spent in each command since it started ("JSON.SET", "XINFO GROUPS", ...).

    A script's figure includes the commands it runs, which also count under their own names.
    """
    stats: dict[str, dict[str, Any]] = client.info("commandstats")
    return {name.removeprefix("cmdstat_").replace("|", " ").upper(): int(row["usec"]) for name, row in stats.items()}


def main_thread_cpu_us(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return (float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])) * 1e6


def usec_per_event(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, float]:
    """What each command cost per event in between; the bench's own polling (under 0.1 µs) is left out."""
    spent = {name: (usec - before.get(name, 0)) / events for name, usec in after.items()}
    return {name: round(us, 2) for name, us in spent.items() if us >= 0.1}


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def drain_once(
    redis_url: str, route: CommandStream, watch: dict[str, int], events: list[Event], timeout_s: float
) -> DrainRun:
    """Push the backlog with the workers stopped, wait out any AOF rewrite it set off, then time the drain."""
    with redis.Redis.from_url(redis_url) as client:
        pids = [pid for name, pid in watch.items() if name != "redis"]
        signal_all(pids, signal.SIGSTOP)
        try:
            last_id = push(client, route, events)
            persistence.wait_until_quiet(redis_url)
        finally:
            forks_before = persistence.forks(redis_url)
            usec_before, cpu_before = command_usec(client), main_thread_cpu_us(client)
            before, machine_before = procs.snapshot(watch), procs.machine_time()
            started_ms = redis_time_ms(client)
            signal_all(pids, signal.SIGCONT)
        started = time.monotonic()
        while not drained(client, route, last_id):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{route.group}: the backlog of {len(events)} was not drained in {timeout_s:.0f} s")
            time.sleep(POLL_S)
        # Redis's and the processes' counters first: counting the replies is work of its own.
        redis_us = usec_per_event(usec_before, command_usec(client), len(events))
        redis_cpu_us = round((main_thread_cpu_us(client) - cpu_before) / len(events), 1)
        after, machine_after = procs.snapshot(watch), procs.machine_time()
        forks = persistence.forks(redis_url) - forks_before
        answered, newest_ms = replies(client, events)
        seconds = max(newest_ms - started_ms, 1) / 1000
        # Shares of the drain itself: the processes idle in the slow poll's last moments.
        cpu = procs.cpu_shares(before, after, seconds)
        cpu |= procs.noise(machine_before, machine_after, seconds, cpu)
        rate = round(len(events) / seconds)
        return DrainRun(len(events), round(seconds, 3), rate, answered, cpu, forks, redis_cpu_us, redis_us)


def wait_consumers(client: redis.Redis, route: CommandStream, pids: list[int], timeout_s: float = 60) -> None:
    """Until each process has joined the group (a consumer is named `{host}-{pid}-{random}`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            names = [as_text(c["name"]) for c in client.xinfo_consumers(route.key(PARTITION), route.group)]
        except redis.ResponseError:
            names = []
        if all(any(f"-{pid}-" in name for name in names) for pid in pids):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{len(pids)} {route.group} workers did not join their group within {timeout_s:.0f} s")


@contextmanager
def workers(redis_url: str, service: str, processes: int, log: IO[str], log_level: str) -> Iterator[Stack]:
    # Replies outlive the drain, so that all of them can be counted after it.
    env = {**service_env(log_level), "REPLY_TTL_S": "600"}
    stack = Stack(redis_url, free_port(), env=env, sink=log)
    try:
        for _ in range(processes):
            stack.spawn(service)
        yield stack
    finally:
        stack.stop_all()


def measure(
    redis_url: str, redis_pid: int | None, service: str, processes: int, plan: DrainPlan, log: IO[str]
) -> DrainCell:
    """Median events/s of `processes` workers of one service draining a backlog, `plan.runs` times."""
    route = SERVICES[service]
    client = redis.Redis.from_url(redis_url)
    try:
        ids = player_ids(client, DOCUMENTS)
        with workers(redis_url, service, processes, log, plan.log_level) as stack:
            watch = {name: process.pid for name, process in stack.processes.items()}
            wait_consumers(client, route, list(watch.values()))
            if redis_pid:
                watch["redis"] = redis_pid
            timeout_s = 30 + plan.events / 500
            runs = [
                drain_once(redis_url, route, watch, backlog(service, ids, plan.events), timeout_s)
                for _ in range(plan.runs)
            ]
            peaks = peak_rss_mb({name: pid for name, pid in watch.items() if name != "redis"})
        cell = DrainCell(service, processes, runs, peaks)
        print(
            f"  workers alone   {service:<11} x{processes}  {cell.events_per_s():>8.0f} events/s  "
            f"({cell.events_per_s() / processes:.0f} per process)  CPU %: {cell.cpu_percent()}",
            flush=True,
        )
        return cell
    finally:
        client.close()


def peak_rss_mb(watch: dict[str, int]) -> dict[str, float]:
    return {name: round(usage.peak_rss_kb / 1024, 1) for name, usage in procs.snapshot(watch).items()}
