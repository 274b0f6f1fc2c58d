import asyncio
import os
import socket
import sys
import tempfile

import uvicorn

from services.gateway.server import GatewayProtocol, NoRoom, make_room
from shared.cli import start
from shared.connection import RedisNotReady, connect, wait_until_ready
from shared.logs import logging_config
from shared.settings import Settings


async def preflight(settings: Settings) -> None:
    """Fail at start-up, with the fix, rather than on the first request."""
    redis = connect(settings.redis_url, max_connections=1)
    try:
        await wait_until_ready(redis, settings.redis_url)
    finally:
        await redis.aclose()


def main() -> None:
    settings = start("python -m services.gateway", "Serve the HTTP API and the browser game.")
    try:
        with socket.create_server((settings.host, settings.port)):
            pass
    except OSError as error:
        sys.exit(
            f"gateway: cannot listen on {settings.host}:{settings.port} ({error.strerror}); set PORT to a free port"
        )
    try:
        make_room(settings)
    except NoRoom as error:
        sys.exit(f"gateway: {error}")
    try:
        asyncio.run(preflight(settings))
    except RedisNotReady as error:
        sys.exit(f"gateway: {error}")
    if settings.gateway_processes == 1:  # counted in memory: cheaper than the files (docs/benchmarks.md)
        serve(settings)
        return
    # Each gateway process counts its HTTP metrics in files of its own here; GET /metrics sums them all.
    # Made afresh at every start (a stale file would count again), before uvicorn starts the processes.
    with tempfile.TemporaryDirectory(prefix="cachequest-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        serve(settings)


def serve(settings: Settings) -> None:
    uvicorn.run(
        "services.gateway.app:from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.gateway_processes,
        http=GatewayProtocol,
        # Off when no peer is trusted: uvicorn would otherwise trust its own default, loopback.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        access_log=settings.access_log,
        server_header=False,  # `server: uvicorn` tells a caller what to attack, and costs every answer a header
        log_level=settings.log_level.lower(),
        log_config=logging_config(settings),
    )


if __name__ == "__main__":
    main()
