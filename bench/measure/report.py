"""The report: markdown tables (printed and put in docs/benchmarks.md), the JSON file and the PNG plot."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.measure.procs import STOLEN

# The issue's targets at 64 connections, and the Node/Express figures it quotes: (req/s, p99 ms).
TARGETS = {"save": (2800, 50), "score": (2800, 50), "top": (5500, 30), "read": (5500, 30)}
ISSUE_NODE = {"save": (1400, 185), "top": (1900, 112), "read": (1850, 67)}
TARGET_WORKER_EVENTS_S = 15_000
TARGET_CONNECTIONS = 64
DOCS_START = "<!-- bench:results:start -->"
DOCS_END = "<!-- bench:results:end -->"

Result = dict[str, Any]


def cells(result: Result, section: str, **match: object) -> list[dict[str, Any]]:
    return [cell for cell in result.get(section, []) if all(cell.get(k) == v for k, v in match.items())]


def one(result: Result, section: str, **match: object) -> dict[str, Any] | None:
    found = cells(result, section, **match)
    return found[0] if found else None


TEXT, FIGURE = "---", "--:"  # a column's alignment row: figures are right-aligned


def table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; each column is (title, TEXT or FIGURE)."""
    lines = [[title for title, _ in columns], *rows]
    text = ["| " + " | ".join(str(value) for value in line) + " |" for line in lines]
    text.insert(1, "|" + "|".join(align for _, align in columns) + "|")
    return "\n".join(text)


def figures(*titles: str) -> list[tuple[str, str]]:
    return [(title, FIGURE) for title in titles]


def http_table(result: Result) -> str:
    columns = [("operation", TEXT), *figures("connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    columns += figures("failed", "Redis forks in the runs")
    rows = [
        [
            cell["operation"],
            cell["connections"],
            f"{cell['rps']:,.0f}",
            f"{cell['p50_ms']:.1f}",
            f"{cell['p95_ms']:.1f}",
            f"{cell['p99_ms']:.1f}",
            f"{cell['max_ms']:.0f}",
            cell["errors"] + cell["non_2xx"],
            cell.get("redis_forks", "-"),
        ]
        for cell in result.get("http", [])
    ]
    return table(columns, rows)


def figure(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    return f"{cell['rps']:,.0f}/s, p99 {cell['p99_ms']:.0f} ms"


def verdict(cell: dict[str, Any] | None, target: tuple[int, int]) -> str:
    if cell is None:
        return "not measured"
    rate_ok, p99_ok = cell["rps"] >= target[0], cell["p99_ms"] <= target[1]
    if rate_ok and p99_ok:
        return "met"
    short = [f"{cell['rps'] / target[0]:.0%} of the rate"] if not rate_ok else []
    short += [f"p99 {cell['p99_ms'] / target[1]:.1f}x the target"] if not p99_ok else []
    return "short: " + ", ".join(short)


def targets_table(result: Result) -> str:
    titles = [
        f"operation (c={TARGET_CONNECTIONS})",
        "target",
        "ours, 1 gateway process",
        "ours, GATEWAY_PROCESSES=2",
        "Node/Express here",
        "FastAPI direct here",
        "Node in the issue",
        "verdict (1 / 2 gateway processes)",
    ]
    rows = []
    for operation, target in TARGETS.items():
        ours = one(result, "http", operation=operation, connections=TARGET_CONNECTIONS)
        two = one(result, "scaling", operation=operation, gateways=2, workers=1)
        node = one(result, "baselines", server="node-express", operation=operation)
        direct = one(result, "baselines", server="fastapi-direct", operation=operation)
        quoted = ISSUE_NODE.get(operation)
        quoted_text = f"{quoted[0]:,}/s, p99 {quoted[1]} ms" if quoted else "-"
        rows.append(
            [
                operation,
                f"≥ {target[0]:,}/s, p99 ≤ {target[1]} ms",
                figure(ours),
                figure(two),
                figure(node),
                figure(direct),
                quoted_text,
                f"{verdict(ours, target)} / {verdict(two, target)}",
            ]
        )
    return table([(title, TEXT) for title in titles], rows)


# Reads measured beside the top-10 read, in the same run: each within this share of its rate (issue 14).
BESIDE_TOP = {"me": "your rank and 5 neighbours each side", "page": "10 entries from rank 50,001"}
BESIDE_TOP_WITHIN = 0.20


def beside_top_table(result: Result) -> str:
    """`me?around=5` and a deep page against the top-10 read of the same run, at each connection count."""
    rows = []
    for cell in result.get("http", []):
        if cell["operation"] not in BESIDE_TOP:
            continue
        top = one(result, "http", operation="top", connections=cell["connections"])
        if top is None or not top["rps"]:
            continue
        ratio = cell["rps"] / top["rps"]
        rows.append(
            [
                f"{cell['operation']} ({BESIDE_TOP[cell['operation']]})",
                cell["connections"],
                figure(cell),
                figure(top),
                f"{ratio:.0%}",
                "met" if ratio >= 1 - BESIDE_TOP_WITHIN else "short",
            ]
        )
    titles = ["read", "connections", "it", "top-10, same run", "its rate / top-10's", "within 20%"]
    return table([(title, TEXT) for title in titles], rows) if rows else "Not measured in this run."


def scaling_table(result: Result) -> str:
    columns = [("operation (c=64)", TEXT), *figures("gateway processes", "worker processes of each", "req/s", "p99 ms")]
    rows = [
        [cell["operation"], cell.get("gateways", 1), cell["workers"], f"{cell['rps']:,.0f}", f"{cell['p99_ms']:.1f}"]
        for cell in result.get("scaling", [])
    ]
    return table(columns, rows)


def beside_table(
    cells: list[dict[str, Any]], shape: list[tuple[str, str]], base: tuple[str, object], same: list[str], beside: str
) -> str:
    """Each cell's figures beside the baseline's (the cell whose field `base[0]` is `base[1]`) of the same
    operation and the same `same` fields, measured in the same run. `shape`: the (field, title) columns.

    The ratio is taken round by round (the cells took turns, shapes_in_turns), each run beside the
    baseline's of its round, so a drift of the box between rounds cancels out: their median, and their
    range, which is the noise any one round had."""
    field, value = base
    baselines = {(*(cell[name] for name in same), cell["operation"]): cell for cell in cells if cell[field] == value}
    columns = [(title, TEXT) for _, title in shape] + [("operation (c=64)", TEXT)]
    columns += figures("req/s", "p99 ms", "non-2xx and errors", f"{beside}, round by round: median (range)")
    rows = []
    for cell in cells:
        found = baselines.get((*(cell[name] for name in same), cell["operation"]))
        ratio = "1.00" if cell is found else "-" if found is None else rounds_ratio(cell["runs"], found["runs"])
        rows.append([*(cell[name] for name, _ in shape), cell["operation"], f"{cell['rps']:,.0f}"])
        rows[-1] += [f"{cell['p99_ms']:.1f}", cell["non_2xx"] + cell["errors"], ratio]
    return table(columns, rows)


def rounds_ratio(runs: list[dict[str, Any]], baseline_runs: list[dict[str, Any]]) -> str:
    ratios = sorted(run["rps"] / base["rps"] for run, base in zip(runs, baseline_runs, strict=True) if base["rps"])
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


ONE_REDIS = "one Redis"  # the cluster phase's baseline topology, as its figures are filed


def cluster_table(result: Result) -> str:
    shape = [("topology", "topology"), ("partitions", "partitions"), ("workers", "workers of each")]
    return beside_table(result.get("cluster", []), shape, ("topology", ONE_REDIS), [], f"beside {ONE_REDIS}")


def durability_table(result: Result) -> str:
    shape = [("topology", "topology"), ("durability", "DURABILITY")]
    return beside_table(result.get("durability", []), shape, ("durability", "local"), ["topology"], "beside local")


def compare_title(result: Result) -> str:
    return f"Beside {result['compare']['label']}"


def compare_table(result: Result) -> str:
    """Ours beside another revision, measured in turns; each side's noise is the spread of its own runs."""
    compare = result["compare"]
    redis = "a three-master Redis Cluster" if compare.get("cluster") else "an embedded Redis"
    intro = (
        f"`{compare['ref']}` is {compare['code']}, run from a checkout of its own against {redis} of its "
        f"own; ours is {result['meta'].get('code', 'unknown')}{' on another' if compare.get('cluster') else ''}. "
        "The two stacks take turns, the order flipped each "
        f"round, after a warm-up each; each figure is the median of a side's {result['settings']['runs']} runs. "
        "Noise is (max - min) / median of a side's req/s over its runs: the verdict says slower or faster "
        "only for a difference beyond the larger of the two."
    )
    return f"{intro}\n\n{pairs_table(compare['pairs'], 'ours', compare['ref'])}"


def metrics_cost_table(result: Result) -> str:
    """The gateway with its HTTP metrics on beside one with them off (HTTP_METRICS=false)."""
    intro = (
        "Two gateway processes on the same Redis and workers, one counting every request for `GET /metrics`, "
        "the other with `HTTP_METRICS=false`, loaded in turns as in a comparison with a revision (the order "
        f"flipped each round; medians of {result['settings']['runs']} runs a side). A ratio below 1 is what "
        "the metrics cost."
    )
    return f"{intro}\n\n{pairs_table(result['metrics_cost']['pairs'], 'on', 'off')}"


def pairs_table(pairs: list[dict[str, Any]], ours: str, ref: str) -> str:
    """Two stacks measured in turns (bench/measure/beside.py), one row an operation and connection count."""
    columns = [("operation", TEXT), *figures("connections", f"{ours} req/s", f"{ours} p99 ms", f"{ref} req/s")]
    columns += figures(f"{ref} p99 ms", f"{ours} / {ref}", f"noise {ours}", f"noise {ref}")
    columns += [(f"server CPU ms per request, {ours} / {ref}", TEXT), ("verdict", TEXT)]
    rows = [
        [
            pair["operation"],
            pair["connections"],
            f"{pair['ours']['rps']:,.0f}",
            f"{pair['ours']['p99_ms']:.1f}",
            f"{pair['ref']['rps']:,.0f}",
            f"{pair['ref']['p99_ms']:.1f}",
            "-" if pair["ratio"] is None else f"{pair['ratio']:.2f}",
            f"{pair['noise_percent']['ours']:.0f}%",
            f"{pair['noise_percent']['ref']:.0f}%",
            " / ".join(f"{side['cpu_ms_per_request'].get('total', 0):.2f}" for side in (pair["ours"], pair["ref"])),
            pair["verdict"],
        ]
        for pair in pairs
    ]
    return table(columns, rows)


def workers_table(result: Result) -> str:
    per_process = f"per process (target ≥ {TARGET_WORKER_EVENTS_S:,})"
    columns = [("service", TEXT), *figures("processes", "events/s", per_process)]
    columns += figures("worker CPU µs per event", "events/s per busy core")
    columns += [("peak RSS MB per process", TEXT), ("CPU % while draining", TEXT)]
    columns += figures("Redis forks in the drains")
    rows = [
        [
            cell["service"],
            cell["processes"],
            f"{cell['events_per_s']:,}",
            f"{cell['events_per_s_per_process']:,}",
            f"{cell.get('worker_cpu_us_per_event', 0):.0f}",
            f"{cell.get('events_per_busy_core_s', 0):,}",
            ", ".join(f"{mb:.0f}" for mb in cell["peak_rss_mb"].values()),
            ", ".join(f"{name} {share:.0f}" for name, share in by_size(cell.get("cpu_percent", {}))),
            cell.get("redis_forks", "-"),
        ]
        for cell in result.get("workers_alone", [])
    ]
    return table(columns, rows)


def redis_time_table(result: Result) -> str:
    columns = [("service", TEXT), *figures("processes", "Redis main thread CPU µs per event")]
    columns += [("in commands, µs per event (a script's time includes the commands it runs)", TEXT)]
    rows = [
        [
            cell["service"],
            cell["processes"],
            f"{cell.get('redis_cpu_us_per_event', 0):.1f}",
            ", ".join(f"{name} {us:.1f}" for name, us in by_command.items()),
        ]
        for cell in result.get("workers_alone", [])
        if (by_command := cell.get("redis_us_per_event"))
    ]
    return table(columns, rows) if rows else "Not measured in this run."


def cpu_table(result: Result) -> str:
    """Where both cores went at 64 connections, and the CPU each request cost the server side.

    CPU % is of one core (200 = the whole box); "everything else" is what other programs took
    meanwhile, and "stolen by the host" what the virtual machine's host took from us. CPU ms per
    request barely moves with that noise, unlike req/s.
    """
    titles = ["server", "operation (c=64)", "CPU % of one core, by process", "server CPU ms per request, by process"]
    found = cells(result, "http", connections=TARGET_CONNECTIONS) + result.get("baselines", [])
    rows = [
        [
            cell["server"],
            cell["operation"],
            ", ".join(f"{name} {share:.0f}" for name, share in by_size(cell["cpu_percent"])),
            ", ".join(f"{name} {ms:.2f}" for name, ms in by_size(cpu_ms_per_request(cell))),
        ]
        for cell in found + ([result["ceiling"]] if result.get("ceiling") else [])
    ]
    return table([(title, TEXT) for title in titles], rows)


def cpu_ms_per_request(cell: dict[str, Any]) -> dict[str, float]:
    """From the median CPU shares and req/s (runs saved before the field existed lack it)."""
    if "cpu_ms_per_request" in cell:
        return dict(cell["cpu_ms_per_request"])
    servers = {k: v for k, v in cell["cpu_percent"].items() if k not in {"wrk", "everything else", STOLEN}}
    per_process = {name: round(10 * share / cell["rps"], 3) for name, share in servers.items()} if cell["rps"] else {}
    return {**per_process, "total": round(sum(per_process.values()), 3)} if per_process else {}


def by_size(values: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(((k, v) for k, v in values.items() if v > 0), key=lambda kv: -kv[1])


def memory_table(result: Result) -> str:
    rows = [
        [phase, ", ".join(f"{name} {mb:.0f}" for name, mb in peaks.items())]
        for phase, peaks in result.get("memory", {}).items()
    ]
    return table([("phase", TEXT), ("peak RSS MB by process", TEXT)], rows)


def soak_table(result: Result) -> str:
    soak = result.get("soak")
    if not soak:
        return "Not run (`--soak SECONDS` runs mixed load at 64 connections and samples memory)."
    rows = [
        [name, f"{series[0]:.1f}", f"{series[-1]:.1f}", f"{max(series):.1f}", len(series)]
        for name, series in soak["rss_mb"].items()
        if series
    ]
    columns = [("process", TEXT), *figures("RSS MB at start", "at end", "max", "samples")]
    intro = (
        f"Mixed load at 64 connections for {soak['seconds']:.0f} s, resident memory sampled every {soak['every_s']} s."
    )
    return f"{intro}\n\n{table(columns, rows)}"


def ceiling_line(result: Result) -> str:
    ceiling = result.get("ceiling")
    if not ceiling:
        return "The load generator's ceiling was not measured."
    return (
        f"wrk against a trivial endpoint (`GET /ping` of the Node baseline, no Redis) at 64 connections: "
        f"{ceiling['rps']:,.0f} req/s with wrk using {ceiling['cpu_percent'].get('wrk', 0):.0f}% of one core."
    )


def code_of(version: str) -> str:
    """What the services ran, without the commit: a commit touching only other files changes nothing."""
    return version.partition(" ")[2] or version


def meta_lines(result: Result) -> str:
    meta = result["meta"]
    py = meta["python"]
    changed = "code_at_end" in meta and code_of(meta["code_at_end"]) != code_of(meta.get("code", ""))
    warning = ["- **the code changed during this run: phases may have measured different code**"] if changed else []
    lines = [
        *warning,
        f"- machine: {meta['cores']} cores ({meta['cpu']}), {meta['memory_gb']} GB, Linux {meta['kernel']}; "
        f"load average at start {meta['load_average_at_start']}, at end {meta.get('load_average_at_end', '?')}",
        f"- code: {meta.get('code', 'unknown')} at start, {meta.get('code_at_end', 'unknown')} at end; "
        f"{meta['wrk']}; Python {py['python']}: " + ", ".join(f"{k} {v}" for k, v in py.items() if k != "python"),
        "- Node baseline: " + ", ".join(f"{k} {v}" for k, v in meta["node"].items()),
        "- Redis: " + ", ".join(f"{k} {v}" for k, v in meta["redis"].items()),
        f"- each figure is the median of {result['settings']['runs']} runs of {result['settings']['duration_s']} s "
        f"(after a {result['settings']['warmup_s']} s warm-up); started {result['started']}",
    ]
    return "\n".join(lines)


def profile_section(result: Result) -> str:
    parts = []
    for found in result.get("profiles", []):
        buckets = ", ".join(f"{name} {share:.0f}%" for name, share in found["buckets"].items())
        top = "; ".join(f"`{name}` {share:.0f}%" for name, share in found["top_functions"][:6])
        inclusive = "; ".join(f"`{name}` {share:.0f}%" for name, share in found["top_inclusive"][:10])
        parts.append(
            f"- **{found['process']}, under {found['operation']}** ({found['samples']} CPU samples). "
            f"By where the CPU was (leaf frame): {buckets}.\n  Most self time: {top}.\n"
            f"  Inside our functions (inclusive): {inclusive}."
        )
    return "\n".join(parts) or "Not profiled in this run."


def markdown(result: Result) -> str:
    """Every table of the run, as docs/benchmarks.md shows them."""
    sections = [
        ("Against the targets", targets_table(result)),
        ("Our stack over HTTP (1 process of each worker)", http_table(result)),
        ("Board reads beside the top-10 read (a board of a million)", beside_top_table(result)),
        ("Throughput with more processes", scaling_table(result)),
        ("The workers alone (backlog drained, replies written)", workers_table(result)),
        ("Where Redis's time went in the drains (INFO commandstats)", redis_time_table(result)),
        ('Where the CPU went (noise: "everything else", "stolen by the host")', cpu_table(result)),
        ("Memory: peak RSS at the end of each phase", memory_table(result)),
        ("Memory under a soak", soak_table(result)),
        ("Profile of the hot path (py-spy, 64 connections)", profile_section(result)),
    ]
    if result.get("costly"):
        sections.append(("A player's saves beside the costliest saves the limits allow", costly_table(result)))
    if result.get("metrics_cost"):
        sections.append(("What the HTTP metrics cost: the gateway with them on beside off", metrics_cost_table(result)))
    if result.get("cluster"):
        sections.append(("A Redis Cluster of three masters beside one Redis", cluster_table(result)))
    if result.get("durability"):
        sections.append(("DURABILITY=replicated beside local (replicas in sync)", durability_table(result)))
    if result.get("live"):
        title = "Live fan-out: a new leader reaching every listener of one gateway process"
        sections.append((title, live_table(result)))
    if result.get("compare"):
        sections.insert(0, (compare_title(result), compare_table(result)))
    body = "\n\n".join(f"#### {title}\n\n{table}" for title, table in sections)
    return f"{meta_lines(result)}\n- {ceiling_line(result)}\n\n{body}\n"


def costly_table(result: Result) -> str:
    found = result["costly"]
    rows = [
        [label, f"{cell['saves']}", f"{cell['p50_ms']}", f"{cell['p99_ms']}", f"{cell['max_ms']}", f"{cell['failed']}"]
        for label, cell in (("alone", found["alone"]), ("beside the attack", found["attacked"]))
    ]
    header = "| the victim's saves | count | p50 ms | p99 ms | max ms | not 200 |\n|---|--:|--:|--:|--:|--:|\n"
    lines = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    answers = ", ".join(f"{status}: {count:,}" for status, count in found["attackers_answers"].items())
    note = (
        f"\n\n{found['attackers']} attacking sessions, {found['lanes']} saves in flight each, every save the most "
        f"values, the longest name and the largest body the limits allow, the write limits at their defaults; "
        f"{found['seconds']:.0f} s each. The attackers' answers: {answers}."
    )
    return header + lines + note


def live_table(result: Result) -> str:
    columns = [
        ("listeners", "--:"), ("generator processes", "--:"), ("p50 ms", "--:"), ("p99 ms", "--:"),
        ("max ms", "--:"), ("missed", "--:"), ("POST p50 ms", "--:"), ("gateway RSS MB before / idle", "--:"),
        ("gateway CPU % idle / rounds", "--:"), ("gateway CPU ms a round", "--:"),
        ("generators CPU % all / busiest", "--:"),
    ]  # fmt: skip
    rows = [
        [
            f"{cell['connected']:,} of {cell['listeners']:,}", cell["generators"], cell["p50_ms"], cell["p99_ms"],
            cell["max_ms"], cell["missed"], cell["post_p50_ms"],
            f"{cell['gateway_rss_mb_before']} / {cell['gateway_rss_mb_idle']}",
            f"{cell['gateway_cpu_idle_pct']} / {cell['gateway_cpu_rounds_pct']}", cell["gateway_cpu_ms_per_round"],
            f"{cell['generators_cpu_rounds_pct']} / {cell['generators_cpu_max_pct']}",
        ]
        for cell in result["live"]
    ]  # fmt: skip
    note = (
        f"\n\n{result['live'][0]['rounds']} rounds each: a score above all others under a new name, timed from just "
        "before its POST until the name reached every listener (CPU: % of one core)."
    )
    return table(columns, rows) + note


def write_json(result: Result, out: Path) -> Path:
    path = out / "latest.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    stamped = out / f"bench-{result['started'].replace(':', '').replace('-', '')}.json"
    shutil.copyfile(path, stamped)
    return path


def update_docs(docs: Path, result: Result, image: Path) -> bool:
    """Replace the generated section of docs/benchmarks.md; prose outside the markers is left alone."""
    if not docs.exists():
        return False
    text = docs.read_text()
    pattern = re.compile(re.escape(DOCS_START) + ".*?" + re.escape(DOCS_END), re.S)
    if not pattern.search(text):
        return False
    relative = Path("..") / image.relative_to(docs.parent.parent)
    generated = f"{DOCS_START}\n\n![benchmark plot]({relative.as_posix()})\n\n{markdown(result)}\n{DOCS_END}"
    docs.write_text(pattern.sub(lambda _: generated, text))
    return True
