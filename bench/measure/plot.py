"""The PNG: throughput and latency percentiles of every operation, the baselines, and scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.measure.report import TARGET_CONNECTIONS, TARGET_WORKER_EVENTS_S, TARGETS, Result, cells, one

OPERATIONS = ("save", "score", "top", "read", "mixed")
SERVERS = ("ours", "node-express", "fastapi-direct")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(result: Result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(18, 10))
    throughput_by_connections(axes[0][0], result)
    p99_by_connections(axes[0][1], result)
    percentiles_at_64(axes[0][2], result)
    against_baselines(axes[1][0], result)
    http_scaling(axes[1][1], result)
    workers_alone(axes[1][2], result)
    meta = result["meta"]
    figure.suptitle(
        f"Cache Quest benchmark, {result['started']}: {meta['cores']} cores, everything on one box "
        f"(median of {result['settings']['runs']} runs; load average at start {meta['load_average_at_start'][0]})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def throughput_by_connections(ax: Any, result: Result) -> None:
    for operation in OPERATIONS:
        found = cells(result, "http", operation=operation)
        if found:
            ax.plot([c["connections"] for c in found], [c["rps"] for c in found], marker="o", label=operation)
    ax.set(title="ours: throughput", xlabel="connections", ylabel="requests/s", xscale="log", ylim=(0, None))
    connection_ticks(ax, result)
    legend_if_any(ax)


def p99_by_connections(ax: Any, result: Result) -> None:
    for operation in OPERATIONS:
        found = cells(result, "http", operation=operation)
        if found:
            ax.plot([c["connections"] for c in found], [c["p99_ms"] for c in found], marker="o", label=operation)
    ax.set(title="ours: p99 latency", xlabel="connections", ylabel="ms", xscale="log")
    connection_ticks(ax, result)
    log_scale_if_data(ax)
    legend_if_any(ax)


def percentiles_at_64(ax: Any, result: Result) -> None:
    width = 0.25
    for offset, metric in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        values = [
            cell[metric] if (cell := one(result, "http", operation=o, connections=TARGET_CONNECTIONS)) else 0
            for o in OPERATIONS
        ]
        ax.bar(
            [i + (offset - 1) * width for i in range(len(OPERATIONS))], values, width, label=metric.removesuffix("_ms")
        )
    ax.set_xticks(range(len(OPERATIONS)), OPERATIONS)
    ax.set(title=f"ours: latency percentiles at {TARGET_CONNECTIONS} connections", ylabel="ms")
    log_scale_if_data(ax)
    legend_if_any(ax)


def against_baselines(ax: Any, result: Result) -> None:
    operations = list(TARGETS)
    width = 0.27
    for offset, server in enumerate(SERVERS):
        section, match = (
            ("http", {"connections": TARGET_CONNECTIONS}) if server == "ours" else ("baselines", {"server": server})
        )
        values = [cell["rps"] if (cell := one(result, section, operation=o, **match)) else 0 for o in operations]
        ax.bar([i + (offset - 1) * width for i in range(len(operations))], values, width, label=server)
    for i, operation in enumerate(operations):
        ax.hlines(TARGETS[operation][0], i - 0.45, i + 0.45, colors="black", linestyles="dashed")
    ax.set_xticks(range(len(operations)), operations)
    ax.set(title=f"req/s at {TARGET_CONNECTIONS} connections (dashed: target)", ylabel="requests/s")
    ax.legend(loc="upper left")


def http_scaling(ax: Any, result: Result) -> None:
    for operation in ("save", "score"):
        found = sorted(cells(result, "scaling", operation=operation, gateways=1), key=lambda c: c["workers"])
        if found:
            ax.plot([c["workers"] for c in found], [c["rps"] for c in found], marker="o", label=operation)
    ax.set(title="ours over HTTP at 64 connections", xlabel="worker processes of each kind", ylabel="requests/s")
    ax.set(ylim=(0, None), xticks=sorted({cell["workers"] for cell in result.get("scaling", [])}))
    legend_if_any(ax)


def workers_alone(ax: Any, result: Result) -> None:
    for service in ("saves", "leaderboard"):
        found = sorted(cells(result, "workers_alone", service=service), key=lambda c: c["processes"])
        if found:
            ax.plot(
                [c["processes"] for c in found],
                [c["events_per_s"] for c in found],
                marker="o",
                label=f"{service} (total)",
            )
            ax.plot(
                [c["processes"] for c in found], [c["events_per_s_per_process"] for c in found],
                marker="x", linestyle="dotted", label=f"{service} (per process)",
            )  # fmt: skip
    ax.axhline(TARGET_WORKER_EVENTS_S, color="black", linestyle="dashed", label="target per process")
    ax.set(title="workers alone: backlog drained", xlabel="worker processes", ylabel="events/s", ylim=(0, None))
    ax.set_xticks(sorted({c["processes"] for c in result.get("workers_alone", [])}))
    legend_if_any(ax)


def log_scale_if_data(ax: Any) -> None:
    """Latencies span orders of magnitude; an empty panel (an operation not run) stays linear."""
    if ax.has_data() and ax.get_ylim()[1] > 0 and ax.dataLim.y1 > 0:
        ax.set_yscale("log")


def legend_if_any(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def connection_ticks(ax: Any, result: Result) -> None:
    """16, 64, 256 as plain numbers on a log axis."""
    counts = sorted({cell["connections"] for cell in result.get("http", [])})
    ax.set_xticks(counts, [str(count) for count in counts])
    ax.minorticks_off()
