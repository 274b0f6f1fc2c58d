"""Two stacks measured in turns, so a difference between them can be told from this box's noise.

Runs of one stack vary by 10-20% in req/s on a shared 2-core machine, and more when other jobs
run (docs/benchmarks.md). Two stacks measured one after the other would also differ by whatever
the host did meanwhile, so the runs alternate, A B B A A B ..., the order flipped each round: a
slow drift falls on both alike. A burst of other work lands on a run of one side and widens that
side's spread, which is why the noise is measured, not assumed: the spread of each stack's runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.measure import persistence
from bench.measure.load import Cell, Plan, Run, Target, one_line, run_wrk


@dataclass(frozen=True)
class Side:
    """A stack under comparison and the requests it is sent (made from its own sessions)."""

    target: Target
    requests_file: Path


def spread_percent(cell: Cell) -> float:
    """(max - min) / median of the runs' req/s: how far this stack's own runs disagree."""
    rates = [run.rps for run in cell.runs]
    middle = statistics.median(rates)
    return round(100 * (max(rates) - min(rates)) / middle, 1) if middle else 0.0


def failures(cell: Cell) -> int:
    return sum(run.errors + run.non_2xx for run in cell.runs)


@dataclass(frozen=True)
class Pair:
    """One operation at one connection count on both stacks."""

    ours: Cell
    ref: Cell

    def ratio(self) -> float | None:
        theirs = self.ref.median("rps")
        return round(self.ours.median("rps") / theirs, 3) if theirs else None

    def verdict(self) -> str:
        """Slower or faster only by more than the larger of the two spreads; failed requests void it."""
        failed = (failures(self.ours), failures(self.ref))
        ratio = self.ratio()
        if any(failed) or ratio is None:
            return f"not comparable: {failed[0]} / {failed[1]} requests failed"
        noise = max(spread_percent(self.ours), spread_percent(self.ref)) / 100
        if ratio < 1 - noise:
            return "slower"
        if ratio > 1 + noise:
            return "faster"
        return "within noise"

    def summary(self) -> dict[str, object]:
        return {
            "operation": self.ours.operation,
            "connections": self.ours.connections,
            "ours": self.ours.summary(),
            "ref": self.ref.summary(),
            "ratio": self.ratio(),
            "noise_percent": {"ours": spread_percent(self.ours), "ref": spread_percent(self.ref)},
            "verdict": self.verdict(),
        }


def measure(ours: Side, ref: Side, operation: str, connections: list[int], plan: Plan) -> list[Pair]:
    """One warm-up each, then `plan.runs` rounds of one run each per connection count, order flipped each round.

    Every run starts once neither Redis has a fork (an AOF rewrite) running: the other stack's
    Redis shares the two cores too.
    """
    sides = (ours, ref)
    redis_urls = [side.target.redis_url for side in sides]
    if plan.warmup_s > 0:
        for side in sides:
            wait_until_quiet(redis_urls)
            run_wrk(side.target.url, side.requests_file, connections[0], plan.warmup_s, side.target.watch)
    pairs = []
    for count in connections:
        runs: tuple[list[Run], list[Run]] = ([], [])
        for round_number in range(plan.runs):
            for index in (0, 1) if round_number % 2 == 0 else (1, 0):
                wait_until_quiet(redis_urls)
                runs[index].append(run_once(sides[index], count, plan.duration_s))
        pair = Pair(cell(ours.target, operation, count, runs[0]), cell(ref.target, operation, count, runs[1]))
        print(f"{one_line(pair.ours)}\n{one_line(pair.ref)}\n  -> {verdict_line(pair)}", flush=True)
        pairs.append(pair)
    return pairs


def run_once(side: Side, connections: int, duration_s: float) -> Run:
    target = side.target
    return run_wrk(target.url, side.requests_file, connections, duration_s, target.watch, target.redis_url)


def cell(target: Target, operation: str, connections: int, runs: list[Run]) -> Cell:
    return Cell(target.name, operation, connections, target.workers, runs, target.gateways)


def wait_until_quiet(redis_urls: list[str | None]) -> None:
    for url in redis_urls:
        persistence.wait_until_quiet(url)


def verdict_line(pair: Pair) -> str:
    ratio = pair.ratio()
    return (
        f"ours / {pair.ref.server}: {'-' if ratio is None else f'{ratio:.2f}'}, "
        f"noise {spread_percent(pair.ours):.0f}% / {spread_percent(pair.ref):.0f}%: {pair.verdict()}"
    )
