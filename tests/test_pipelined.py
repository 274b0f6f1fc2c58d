"""shared/pipelined.py against a real Redis: order, errors, reconnects, the overdue watchdog, the blocking pool."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis import exceptions

from shared.pipelined import Arg, PipelinedRedis, Script


def run(redis_url: str, body: Callable[[PipelinedRedis], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        client = PipelinedRedis(redis_url, **options)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def blpop(key: str) -> Callable[[int], tuple[Arg, ...]]:
    """BLPOP for as many ms as `blocking` gives it."""
    return lambda ms: ("BLPOP", key, ms / 1000)


def test_concurrent_commands_get_their_own_replies(redis_url: str) -> None:
    async def body(client: PipelinedRedis) -> list[Any]:
        await client.execute("DEL", "pipelined:n")
        return await asyncio.gather(*(client.execute("INCR", "pipelined:n") for _ in range(500)))

    assert sorted(run(redis_url, body)) == list(range(1, 501))


def test_errors_are_redis_py_exceptions_and_the_connection_survives(redis_url: str) -> None:
    async def body(client: PipelinedRedis) -> Any:
        with pytest.raises(exceptions.ResponseError, match="unknown command"):
            await client.execute("NO-SUCH-COMMAND")
        return await client.execute("PING")

    assert run(redis_url, body) == b"PONG"


def test_a_script_is_sent_whole_when_redis_has_forgotten_it(redis_url: str) -> None:
    script = Script("return ARGV[1] .. KEYS[1]")

    async def body(client: PipelinedRedis) -> Any:
        await client.execute("SCRIPT", "FLUSH")
        first = await client.script(script, ["key"], ["a-"])
        return first, await client.script(script, ["key"], ["b-"])

    assert run(redis_url, body) == (b"a-key", b"b-key")


def test_the_database_in_the_url_is_selected(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/3"
    run(url, lambda client: client.execute("SET", "pipelined:db", "three"))
    assert redis.Redis.from_url(url).get("pipelined:db") == b"three"
    assert redis.Redis.from_url(redis_url).get("pipelined:db") is None


def test_a_dropped_connection_fails_what_is_in_flight_then_reconnects(redis_url: str) -> None:
    async def body(client: PipelinedRedis) -> Any:
        await client.execute("CLIENT", "SETNAME", "pipelined-victim")
        killer = redis.Redis.from_url(redis_url)
        waiting = asyncio.ensure_future(client.blocking(5000, blpop("pipelined:never")))
        await asyncio.sleep(0.2)
        killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        with pytest.raises(exceptions.ConnectionError):
            await waiting
        return await client.execute("PING")

    assert run(redis_url, body) == b"PONG"


def test_an_unanswered_command_times_out(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)

    async def body(client: PipelinedRedis) -> float:
        await client.execute("PING")
        admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")  # Redis stays silent for 2 s
        started = time.monotonic()
        with pytest.raises(exceptions.TimeoutError):
            await client.execute("PING")
        return time.monotonic() - started

    elapsed = run(redis_url, body, timeout_s=0.5)
    admin.execute_command("CLIENT", "UNPAUSE")  # answered once the pause is over: Redis is left as found
    assert elapsed < 1.9  # the watchdog looks once a second


def test_a_cancelled_blocking_read_does_not_leave_its_connection_blocked(redis_url: str) -> None:
    async def body(client: PipelinedRedis) -> Any:
        waiting = asyncio.ensure_future(client.blocking(5000, blpop("pipelined:list")))
        await asyncio.sleep(0.1)
        waiting.cancel()
        await client.execute("RPUSH", "pipelined:list", "x")
        # Had the cancelled read's connection gone back to the pool, it would take this element.
        return await client.blocking(1000, blpop("pipelined:list"))

    assert run(redis_url, body) == [b"pipelined:list", b"x"]


def test_blocking_connections_are_capped_and_closed_once_idle(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)

    def blocking_connections() -> int:  # ours are the only ones whose last command was BLPOP
        return sum(1 for client in admin.client_list() if client["cmd"] == "blpop")

    async def body(client: PipelinedRedis) -> tuple[list[Any], int, int]:
        await client.execute("DEL", "pipelined:cap")
        waits = [asyncio.ensure_future(client.blocking(5000, blpop("pipelined:cap"))) for _ in range(40)]
        await asyncio.sleep(0.2)
        held = blocking_connections()
        await client.execute("RPUSH", "pipelined:cap", *range(40))
        popped = await asyncio.gather(*waits)
        await asyncio.sleep(0.8)  # idle for longer than idle_s
        return popped, held, blocking_connections()

    popped, held, left = run(redis_url, body, max_blocking=4, idle_s=0.3)
    assert sorted(int(value) for _key, value in popped) == list(range(40)), "every waiter got its element"
    assert (held, left) == (4, 0)


def test_a_blocking_command_waiting_for_a_connection_keeps_its_deadline(redis_url: str) -> None:
    """With the one connection taken for 0.6 s: a 0.3 s wait ends empty at 0.3 s, a 1 s wait at 1 s."""

    async def timed(client: PipelinedRedis, wait_ms: int) -> tuple[Any, float]:
        started = time.monotonic()
        return await client.blocking(wait_ms, blpop("pipelined:empty")), time.monotonic() - started

    async def body(client: PipelinedRedis) -> list[tuple[Any, float]]:
        holder = asyncio.ensure_future(timed(client, 600))
        await asyncio.sleep(0.05)  # it has the connection
        return list(await asyncio.gather(holder, timed(client, 300), timed(client, 1000)))

    (held, held_s), (starved, starved_s), (late, late_s) = run(redis_url, body, max_blocking=1)
    assert held is None and starved is None and late is None
    assert 0.5 < held_s < 0.9
    assert 0.25 < starved_s < 0.5, "gave up waiting for a connection at its deadline"
    assert 0.9 < late_s < 1.4, "blocked only for what was left of its wait"


def test_an_unreachable_redis_is_a_connection_error(redis_url: str) -> None:
    with pytest.raises(exceptions.ConnectionError, match="cannot connect"):
        run("redis://127.0.0.1:1/0", lambda client: client.execute("PING"))


def test_requests_waiting_for_a_connection_share_one_attempt() -> None:
    """A Redis that accepts but never answers (here: never answers AUTH): every waiting request fails
    together, after one attempt, instead of queueing for one connect timeout each."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(server.accept()[0])

        threading.Thread(target=accept, daemon=True).start()

        async def body(client: PipelinedRedis) -> list[BaseException | Any]:
            return await asyncio.gather(*(client.execute("PING") for _ in range(20)), return_exceptions=True)

        started = time.monotonic()
        outcomes = run(f"redis://:secret@127.0.0.1:{port}/0", body, timeout_s=0.5)
        elapsed = time.monotonic() - started
    assert all(isinstance(outcome, exceptions.TimeoutError) for outcome in outcomes), outcomes
    assert len(accepted) == 1
    assert elapsed < 2.5  # one AUTH left unanswered for 0.5 s, found by the once-a-second watchdog
    for connection in accepted:
        connection.close()
