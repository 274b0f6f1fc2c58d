"""Live fan-out: thousands of event-stream listeners on one gateway process, and a new leader posted.

The listeners are raw asyncio sockets split over a few generator processes: each looks for the new
leader's name in the bytes it reads and notes the time, nothing more (no HTTP or SSE parsing), so the
load generator is not what is measured. To show it, each run reports the generators' own CPU, and the
same listeners are measured again split over twice as many processes: if the generators were the
bottleneck, halving each one's share would change the figures.

A round posts a score under a new name above every other (the leader's plus one), timed from just
before the POST until the name has reached every listener (the write path, the worker's announcement,
the gateway's read and its fan-out); the POST's own answer time is given beside it. The gateway's
memory and CPU are read from /proc before the listeners connect, with them connected and idle
(heartbeats only), and during the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench.measure import procs

ROUND_TIMEOUT_S = 20
CONNECT_BATCH = 100  # connections opened at once, under the listen backlog


@dataclass(frozen=True)
class Split:
    listeners: int
    generators: int


@dataclass(frozen=True)
class Figures:
    listeners: int
    generators: int
    connected: int
    rounds: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    post_p50_ms: float
    missed: int  # listener-rounds that never saw the leader within ROUND_TIMEOUT_S
    gateway_rss_mb_before: float
    gateway_rss_mb_idle: float
    gateway_cpu_idle_pct: float
    gateway_cpu_rounds_pct: float
    gateway_cpu_ms_per_round: float  # the POST, the read of the announcement and the fan-out to every listener
    generators_cpu_rounds_pct: float  # all generator processes together, % of one core
    generators_cpu_max_pct: float  # the busiest one
    round_max_ms: list[float]  # each round's slowest listener, in order: where the tail comes from


class Listener(asyncio.Protocol):
    """One event stream, reduced to: did the awaited name come, and when."""

    def __init__(self, hold: Hold) -> None:
        self.hold = hold
        self.tail = b""
        self.opened = False
        self.seen = False

    def data_received(self, data: bytes) -> None:
        if not self.opened:
            if not data.startswith(b"HTTP/1.1 200"):
                self.hold.failed += 1
            self.opened = True
            self.hold.answered()
        marker = self.hold.marker
        if marker and not self.seen and marker in self.tail + data:
            self.seen = True
            self.hold.saw(time.monotonic())
        self.tail = data[-64:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hold.lost += 1


class Hold:
    """One generator process's listeners."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.marker = b""
        self.seen_at: list[float] = []
        self.opened = self.failed = self.lost = 0
        self.all_opened = asyncio.Event()
        self.all_seen = asyncio.Event()
        self.expected = 0

    def answered(self) -> None:
        self.opened += 1
        if self.opened == self.expected:
            self.all_opened.set()

    def arm(self, marker: bytes) -> None:
        self.marker, self.seen_at = marker, []
        self.all_seen.clear()
        for listener in self.listeners:
            listener.seen = False

    def saw(self, at: float) -> None:
        self.seen_at.append(at)
        if len(self.seen_at) == len(self.listeners):
            self.all_seen.set()


async def hold_streams(host: str, port: int, path: str, count: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    hold = Hold()
    hold.expected = count
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    for start in range(0, count, CONNECT_BATCH):
        opened = await asyncio.gather(
            *(
                loop.create_connection(lambda: Listener(hold), host, port)
                for _ in range(min(CONNECT_BATCH, count - start))
            )
        )
        for transport, listener in opened:
            transport.write(request)
            hold.listeners.append(listener)
    await hold.all_opened.wait()  # every stream answered, its first top with it
    gc.freeze()  # what holds the streams, out of this process's full collections: their pauses are not what is measured
    pipe.send(("ready", hold.opened - hold.failed))
    while True:
        command, marker = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            return
        hold.arm(marker)
        pipe.send(("armed", None))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hold.all_seen.wait(), ROUND_TIMEOUT_S)
        pipe.send(("seen", hold.seen_at))


def generator_main(host: str, port: int, path: str, count: int, pipe: Connection) -> None:
    """A generator process: enough descriptors for its sockets, then hold them until told to stop."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(hold_streams(host, port, path, count, pipe))


def ask_all(pipes: list[Connection], command: str, marker: bytes = b"") -> list[Any]:
    for pipe in pipes:
        pipe.send((command, marker))
    return [pipe.recv()[1] for pipe in pipes]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def cpu_pct(before: procs.Usage, after: procs.Usage, wall_s: float) -> float:
    return round(100 * (after.cpu_s - before.cpu_s) / wall_s, 1)


def measure(url: str, board: str, gateway_pid: int, split: Split, rounds: int, idle_s: float) -> Figures:
    """One split of listeners over generator processes: connect them all, sit idle, then the rounds."""
    host, port = url.removeprefix("http://").split(":")
    path = f"/api/leaderboard/{board}/live"
    context = multiprocessing.get_context("spawn")
    per_generator = split.listeners // split.generators
    before = procs.usage(gateway_pid)
    assert before is not None
    pipes, generators = [], []
    for _ in range(split.generators):
        ours, theirs = context.Pipe()
        process = context.Process(target=generator_main, args=(host, int(port), path, per_generator, theirs))
        process.start()
        pipes.append(ours)
        generators.append(process)
    try:
        connected = sum(pipe.recv()[1] for pipe in pipes)
        time.sleep(1)  # the first tops are sent: from here on, idle
        idle_start, idle_at = procs.usage(gateway_pid), time.monotonic()
        time.sleep(idle_s)
        idle_end, idle_wall = procs.usage(gateway_pid), time.monotonic() - idle_at
        assert idle_start is not None and idle_end is not None
        latencies_ms, posts_ms, missed = [], [], 0
        round_max_ms: list[float] = []
        with httpx.Client(base_url=url, timeout=30) as client:
            me = client.get("/session").json()["id"]
            leader = client.get(f"/api/leaderboard/{board}", params={"count": 1}).json()
            first_score = int(leader[0]["score"]) + 1 if isinstance(leader, list) and leader else 1
            gateway_start, rounds_at = procs.usage(gateway_pid), time.monotonic()
            generators_start = [procs.usage(process.pid or 0) for process in generators]
            for number in range(rounds):
                member = f"Round{number}x{time.monotonic_ns() % 10**9}-{me}"
                ask_all(pipes, "arm", f'"{member}"'.encode())
                posted_at = time.monotonic()
                answer = client.post(
                    "/api/leaderboard", json={"key": board, "score": first_score + number, "member": member}
                )
                posts_ms.append((time.monotonic() - posted_at) * 1000)
                answer.raise_for_status()
                seen = [at for found in (pipe.recv()[1] for pipe in pipes) for at in found]
                missed += connected - len(seen)
                latencies_ms += [(at - posted_at) * 1000 for at in seen]
                round_max_ms.append(round((max(seen) - posted_at) * 1000, 1) if seen else -1.0)
                time.sleep(0.3)
            rounds_wall = time.monotonic() - rounds_at
            gateway_end = procs.usage(gateway_pid)
            generators_end = [procs.usage(process.pid or 0) for process in generators]
        assert gateway_start is not None and gateway_end is not None
        generator_pcts = [
            cpu_pct(start, end, rounds_wall)
            for start, end in zip(generators_start, generators_end, strict=True)
            if start is not None and end is not None
        ]
        ask_all_stop(pipes)
    finally:
        for process in generators:
            process.join(10)
            if process.is_alive():
                process.kill()
    return Figures(
        listeners=split.listeners,
        generators=split.generators,
        connected=connected,
        rounds=rounds,
        p50_ms=round(statistics.median(latencies_ms), 1),
        p99_ms=round(percentile(latencies_ms, 0.99), 1),
        max_ms=round(max(latencies_ms), 1),
        post_p50_ms=round(statistics.median(posts_ms), 1),
        missed=missed,
        gateway_rss_mb_before=round(before.rss_kb / 1024, 1),
        gateway_rss_mb_idle=round(idle_end.rss_kb / 1024, 1),
        gateway_cpu_idle_pct=cpu_pct(idle_start, idle_end, idle_wall),
        gateway_cpu_rounds_pct=cpu_pct(gateway_start, gateway_end, rounds_wall),
        gateway_cpu_ms_per_round=round(1000 * (gateway_end.cpu_s - gateway_start.cpu_s) / rounds, 1),
        generators_cpu_rounds_pct=round(sum(generator_pcts), 1),
        generators_cpu_max_pct=max(generator_pcts),
        round_max_ms=round_max_ms,
    )


def ask_all_stop(pipes: list[Connection]) -> None:
    for pipe in pipes:
        pipe.send(("stop", b""))


def summary(figures: Figures) -> dict[str, Any]:
    return asdict(figures)
