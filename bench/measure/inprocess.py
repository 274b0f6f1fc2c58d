"""The program bench/measure/instructions.py runs under callgrind: one operation's requests, driven
straight into a checkout's gateway app (its ASGI callable) in this process, between a zeroing and a
dump of callgrind's counters, so the dump counts those requests and nothing else.

It imports nothing of ours but the checkout's own gateway (the checkout's root comes first on
sys.path), so it drives any revision alike; what it sends comes as JSON from instructions.py. The
collector is off while it counts: a full collection lands in one run and not the other. Run as
`python -m bench.measure.inprocess` (by path, this folder would shadow the standard library's
`profile`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message

PLACEHOLDER = b"SESSIONID"  # in paths and bodies: the session's id
WARM_UP = 50


async def start(app: ASGIApp) -> asyncio.Task[None]:
    """The app's lifespan start-up (its Redis client, indexes, the reply listeners); its task, which
    runs as long as the app does."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, inbox.get, outbox.put)

    lifespan = asyncio.get_running_loop().create_task(serve())
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        sys.exit(f"the gateway did not start: {started}")
    return lifespan


async def request(app: ASGIApp, method: str, target: bytes, cookie: bytes = b"", body: bytes = b"") -> dict[str, Any]:
    """One request as uvicorn hands it over; the status, headers and body of the answer."""
    path, _, query = target.partition(b"?")
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
    if cookie:
        headers.append((b"cookie", cookie))
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path.decode(), "raw_path": path, "query_string": query,
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "state": {},
    }  # fmt: skip
    sent = False
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: nothing more comes
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.update(status=message["status"], headers=message["headers"])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer


def callgrind(flag: str) -> None:
    """`callgrind_control -z` (zero) or `-d` (dump) on this process. Callgrind takes the command
    while this process runs code, so it spins rather than waits."""
    control = subprocess.Popen(["callgrind_control", flag, str(os.getpid())], stdout=subprocess.DEVNULL)
    while control.poll() is None:
        time.sleep(0.005)


async def drive(plan: dict[str, Any], count: int) -> None:
    from services.gateway.app import create_app  # the checkout's
    from shared.settings import Settings

    app = create_app(Settings())
    lifespan = await start(app)
    answer = await request(app, "GET", b"/session")
    cookie = next(value for name, value in answer["headers"] if name == b"set-cookie").split(b";")[0]
    session = orjson.loads(answer["body"])["id"].encode()

    def filled(step: list[str]) -> tuple[str, bytes, bytes]:
        method, target, body = step
        return method, target.encode().replace(PLACEHOLDER, session), body.encode().replace(PLACEHOLDER, session)

    for step in plan["setup"]:
        step_method, step_target, step_body = filled(step)
        answer = await request(app, step_method, step_target, cookie, step_body)
        if answer["status"] != 200:
            sys.exit(f"setting up: {step[0]} {step[1]} answered {answer['status']}: {answer['body'][:200]!r}")
    await asyncio.sleep(0.5)  # the score's worker has written the board
    method, target, body = filled(plan["request"])
    for _ in range(WARM_UP):
        answer = await request(app, method, target, cookie, body)
    if answer["status"] != 200:
        sys.exit(f"{method} {target.decode()} answered {answer['status']}: {answer['body'][:200]!r}")
    gc.collect()
    gc.freeze()
    gc.disable()
    callgrind("-z")
    for _ in range(count):
        await request(app, method, target, cookie, body)
    callgrind("-d")
    lifespan.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="Drive one operation into a gateway in process (under callgrind).")
    parser.add_argument("--root", required=True, help="the checkout whose gateway runs")
    parser.add_argument("--plan", required=True, help="JSON: the setup requests and the request to count")
    parser.add_argument("--requests", type=int, required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    os.chdir(args.root)  # its .env, as its services read it
    asyncio.run(drive(orjson.loads(args.plan), args.requests))
    os._exit(0)  # the counting is done: no shutdown to count or wait for


if __name__ == "__main__":
    main()
