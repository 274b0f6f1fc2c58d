"""The machine and the versions a figure was measured with: a figure means nothing without them."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import redis

PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic", "redis", "hiredis", "orjson")
NODE_PACKAGES = ("express", "express-session", "connect-redis", "redis")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb() -> float:
    try:
        total_kb = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        return round(int(total_kb.split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        return 0.0


def command_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "unknown"


def python_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def node_versions(baseline_dir: Path) -> dict[str, str]:
    found = {"node": command_version(["node", "--version"])}
    for name in NODE_PACKAGES:
        manifest = baseline_dir / "node_modules" / name / "package.json"
        if manifest.exists():
            found[name] = str(json.loads(manifest.read_text()).get("version", "?"))
    return found


def redis_version(url: str) -> dict[str, str]:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
        modules = {str(m[b"name"].decode()): str(m[b"ver"]) for m in client.module_list()}
    finally:
        client.close()
    return {"redis": str(info.get("redis_version")), **{f"module {name}": ver for name, ver in modules.items()}}


def git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def code_version(root: Path) -> str:
    """The commit, and the code the services run: the trees of services/ and shared/, `+dirty` if edited."""
    commit = git(root, "rev-parse", "--short", "HEAD") or "unknown"
    trees = "/".join(git(root, "rev-parse", "--short", f"HEAD:{folder}") or "?" for folder in ("services", "shared"))
    dirty = "+dirty" if git(root, "status", "--porcelain", "--", "services", "shared") else ""
    return f"{commit} (services/shared trees {trees}{dirty})"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def describe(redis_url: str, baseline_dir: Path) -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gb": memory_gb(),
        "kernel": platform.release(),
        "code": code_version(baseline_dir.parents[1]),
        "load_average_at_start": load_average(),
        "wrk": command_version(["wrk", "--version"]),
        "python": python_versions(),
        "node": node_versions(baseline_dir),
        "redis": redis_version(redis_url),
    }
