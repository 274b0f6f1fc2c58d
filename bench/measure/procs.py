"""CPU time and memory of the processes under test, read from /proc (Linux only).

CPU shares say where the two cores went during a run (gateway, workers, Redis,
the load generator); VmHWM is the kernel's own record of a process's peak RSS.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
STOLEN = "stolen by the host"


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss_kb: int
    peak_rss_kb: int


def usage(pid: int) -> Usage | None:
    """CPU seconds (user + system), current and peak resident memory; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
        with open(f"/proc/{pid}/status") as status_file:
            status = dict(line.split(":", 1) for line in status_file if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces; fields after it are fixed
    cpu_s = (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime
    return Usage(cpu_s, kilobytes(status.get("VmRSS")), kilobytes(status.get("VmHWM")))


def kilobytes(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


def children(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/*/children (uvicorn's workers under its supervisor)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found += [int(child) for child in listing.read().split()]
    except OSError:
        return []
    return found


def with_children(pids: dict[str, int]) -> dict[str, int]:
    """The processes and their children (named `<name>.<n>`), so a supervisor's workers are counted."""
    expanded = dict(pids)
    for name, pid in pids.items():
        for n, child in enumerate(children(pid), start=1):
            expanded[f"{name}.{n}"] = child
    return expanded


def snapshot(pids: dict[str, int]) -> dict[str, Usage]:
    return {name: found for name, pid in pids.items() if (found := usage(pid)) is not None}


def cpu_shares(before: dict[str, Usage], after: dict[str, Usage], wall_s: float) -> dict[str, float]:
    """Per process, the percentage of one core used between two snapshots (200 = both cores)."""
    return {
        name: round(100 * (after[name].cpu_s - before[name].cpu_s) / wall_s, 1)
        for name in after
        if name in before and wall_s > 0
    }


@dataclass(frozen=True)
class MachineTime:
    """CPU seconds since boot, all cores together (from /proc/stat)."""

    busy_s: float  # this machine's programs and kernel
    stolen_s: float  # taken by the hypervisor for other guests while we wanted to run ("steal")


def machine_time() -> MachineTime:
    with open("/proc/stat") as stat_file:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(value) for value in stat_file.readline().split()[1:9]
        )
    return MachineTime((user + nice + system + irq + softirq) / TICKS_PER_S, steal / TICKS_PER_S)


def noise(before: MachineTime, after: MachineTime, wall_s: float, measured: dict[str, float]) -> dict[str, float]:
    """The CPU (% of one core) that the `measured` processes did not use: other programs and the kernel
    ("everything else"), and what the host of this virtual machine took ("stolen by the host")."""
    busy = 100 * (after.busy_s - before.busy_s) / wall_s
    stolen = 100 * (after.stolen_s - before.stolen_s) / wall_s
    return {"everything else": round(max(0.0, busy - sum(measured.values())), 1), STOLEN: round(stolen, 1)}


def children_cpu_s() -> float:
    """CPU seconds of every child already waited for: around one `subprocess.run`, that child's own."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime
