"""`GET /metrics`: the gateway's HTTP traffic, and the streams and workers as Redis shows them.

HTTP requests are counted as they are answered (Observe calls `HttpMetrics.record`), by route
template, never by raw path, so a million players make no more series than the routes: in memory with
one gateway process, and with several (GATEWAY_PROCESSES) each writes its counts to a file of its own in
PROMETHEUS_MULTIPROC_DIR, which the gateway's __main__ makes afresh before uvicorn starts them, and
any process answers a scrape with the sum of all: one consistent view, whichever process answers.

Everything else is read from Redis at scrape time, so it is the same whichever gateway is asked and
needs no process of its own: each partition's stream length and its group's pending and lag (XINFO
GROUPS), the dead letters (XLEN), and the events the workers counted (a hash each worker adds to
after every batch, shared/worker.py). A Redis that does not answer leaves those out and says so in
`cachequest_redis_up`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from starlette.responses import Response

from services.gateway.layers import Call
from services.gateway.responses import error_response
from services.gateway.routing import Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys
from shared.connection import REDIS_DOWN
from shared.protocol import COMMAND_STREAMS
from shared.settings import Settings, parse_networks

log = logging.getLogger(__name__)

# Reads answer in about a millisecond, writes in a few; a command's deadline is 5 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Any other method is counted as "other": a client must not be able to make series at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUESTS_NAME, REQUESTS_HELP = (
    "cachequest_http_requests",
    "HTTP requests answered, by route template, method and status",
)
DURATION_NAME, DURATION_HELP = "cachequest_http_request_duration_seconds", "Time to answer an HTTP request, by route"


class HttpMetrics(Protocol):
    def record(self, route: str, method: str, status: int, seconds: float) -> None: ...


def http_metrics(settings: Settings) -> HttpMetrics | None:
    """What counts the requests: nothing (HTTP_METRICS=false), this process's memory, or, with several
    gateway processes, prometheus-client's files that every process adds up at a scrape."""
    if not settings.http_metrics:
        return None
    return SharedHttpMetrics() if "PROMETHEUS_MULTIPROC_DIR" in os.environ else InMemoryHttpMetrics()


class InMemoryHttpMetrics(Collector):
    """Counts in plain dicts, turned into metrics at a scrape: a request costs a few dict operations,
    where prometheus-client's locked counter and histogram cost the gateway a sixth of a fast read's
    instructions (docs/benchmarks.md). One event loop updates them, so no lock is needed."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # Per route: a count per bucket (BUCKETS, then +Inf), not cumulative, and the sum of the seconds last.
        self.durations: dict[str, list[float]] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in METHODS else "other", status)
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.durations.get(route)
        if counts is None:
            counts = self.durations[route] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is at or above it
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_NAME, REQUESTS_HELP, labels=["route", "method", "status"])
        for (route, method, status), count in self.requests.items():
            requests.add_metric([route, method, str(status)], count)
        durations = HistogramMetricFamily(DURATION_NAME, DURATION_HELP, labels=["route"])
        for route, counts in self.durations.items():
            cumulative = list(accumulate(counts[:-1]))
            bounds = [*map(floatToGoString, BUCKETS), "+Inf"]  # as prometheus-client's own histograms name them
            durations.add_metric([route], list(zip(bounds, cumulative, strict=True)), counts[-1])
        yield from (requests, durations)


class SharedHttpMetrics:
    """prometheus-client's metrics, which in multiprocess mode each process writes to a file of its own
    in PROMETHEUS_MULTIPROC_DIR (made afresh by the gateway's __main__), and any process answers a
    scrape with the sum of all: one consistent view, whichever process answers."""

    def __init__(self) -> None:
        self.requests_total = Counter(REQUESTS_NAME, REQUESTS_HELP, ["route", "method", "status"], registry=None)
        self.duration = Histogram(DURATION_NAME, DURATION_HELP, ["route"], buckets=BUCKETS, registry=None)
        # Each label set's child, looked up once and kept.
        self.requests: dict[tuple[str, str, int], Counter] = {}
        self.durations: dict[str, Histogram] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        counter = self.requests.get((route, method, status))
        if counter is None:
            label = method if method in METHODS else "other"
            counter = self.requests[(route, method, status)] = self.requests_total.labels(route, label, str(status))
        counter.inc()
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = self.duration.labels(route)
        histogram.observe(seconds)


def process_exposition() -> bytes:
    """prometheus-client's own metrics: of every gateway process in multiprocess mode, else of this one."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


@dataclass
class RedisView:
    """What Redis shows of the streams and workers at one scrape."""

    stream_lengths: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    events: dict[tuple[str, str], int] = field(default_factory=dict)


async def read_redis(store: Store, partitions: int) -> RedisView:
    view = RedisView()
    streams = [(stream, stream.key(n)) for stream in COMMAND_STREAMS for n in range(partitions)]
    infos, dead, events = await asyncio.gather(
        asyncio.gather(*(store.stream_groups(key) for _, key in streams)),
        asyncio.gather(*(store.stream_length(keys.dead_letters(n)) for n in range(partitions))),
        store.event_counts(),
    )
    for (stream, key), (length, groups) in zip(streams, infos, strict=True):
        view.stream_lengths[key] = length
        view.pending.setdefault(stream.group, 0)
        for group in groups:
            if group.name == stream.group:
                view.pending[stream.group] += group.pending
                if group.lag is not None:  # Redis cannot always tell (entries deleted mid-stream)
                    view.lag[stream.group] = view.lag.get(stream.group, 0) + group.lag
    view.dead_letters = sum(dead)
    view.events = events
    return view


class RedisCollector(Collector):
    """One scrape's Redis view as Prometheus metrics."""

    def __init__(self, view: RedisView | None) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("cachequest_redis_up", "1 if Redis answered this scrape's questions")
        up.add_metric([], 0 if self.view is None else 1)
        yield up
        view = self.view
        if view is None:
            return
        length = GaugeMetricFamily("cachequest_stream_length", "Entries in a command stream", labels=["stream"])
        for stream, entries in view.stream_lengths.items():
            length.add_metric([stream], entries)
        pending = GaugeMetricFamily(
            "cachequest_stream_pending",
            "Entries delivered to a group's workers, not yet acknowledged",
            labels=["group"],
        )
        lag = GaugeMetricFamily("cachequest_stream_lag", "Entries no worker of a group has read yet", labels=["group"])
        for group, count in view.pending.items():
            pending.add_metric([group], count)
        for group, count in view.lag.items():
            lag.add_metric([group], count)
        # A gauge despite the name API.md gives it: replaying a dead letter removes it.
        dead = GaugeMetricFamily("cachequest_dead_letters_total", "Entries in the dead-letter streams")
        dead.add_metric([], view.dead_letters)
        events = CounterMetricFamily(
            "cachequest_events", "Commands the workers settled, by group and outcome", labels=["group", "outcome"]
        )
        for (group, outcome), count in sorted(view.events.items()):
            events.add_metric([group, outcome], count)
        yield from (length, pending, lag, dead, events)


def may_read(address: str, allowed: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # "unknown": no peer address at all
        return False
    return any(ip in network for network in parse_networks(allowed, "METRICS_ALLOW"))


async def metrics(call: Call) -> Response:
    """Prometheus text format, to the addresses in METRICS_ALLOW only."""
    settings: Settings = call.state.settings
    if not may_read(client_address(call.scope), settings.metrics_allow):
        return error_response(403, "Metrics are served only to the addresses in METRICS_ALLOW")
    view: RedisView | None
    try:
        view = await read_redis(call.state.store, settings.stream_partitions)
    except (*REDIS_DOWN, RedisError) as error:
        log.warning("metrics: Redis did not answer (%s); serving the HTTP metrics alone", error)
        view = None
    registry = CollectorRegistry()
    registry.register(RedisCollector(view))
    if isinstance(http := call.state.http_metrics, InMemoryHttpMetrics):
        registry.register(http)
    return Response(process_exposition() + generate_latest(registry), media_type=CONTENT_TYPE)


ROUTES = [Route("GET", "/metrics", metrics, "metrics", in_schema=False)]
