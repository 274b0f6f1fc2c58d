"""The gateway's Redis client: one pipelined connection, plus one per blocking read.

redis-py spends far more CPU on each command (a pool checkout that probes the socket, retry and
timeout wrappers, packing in Python) than one shared, pipelined connection does: several times
the throughput on the same 2 cores (docs/benchmarks.md has the figures). So the gateway's commands
(services/gateway/store.py) come here. Every command of every concurrent request goes down one
connection, all those of one event-loop turn in one write; hiredis parses the replies, which come
back in order. A blocking read (XREAD BLOCK) would hold that connection up, so each takes one of
its own from a pool: at most `max_blocking` of them, so a burst of writes cannot take all of
Redis's clients (maxclients), and each closes after `idle_s` unused, so a burst leaves none behind.

It raises redis-py's exception classes, so callers handle both clients alike (shared.connection's
REDIS_DOWN and unavailable()). It speaks RESP2, and takes host, port, password, database, TLS and Unix sockets from
the same REDIS_URL as redis-py. A dropped connection fails the commands in flight (the gateway
answers 503) and the next command reconnects; a command unanswered after `timeout_s` drops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis import exceptions
from redis.connection import SSLConnection, parse_url

Arg = str | bytes | int | float


@dataclass(frozen=True)
class Script:
    """A Lua script, called by its SHA1 and sent whole only when Redis lacks it (a restart, a flush)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def as_map(flat: Sequence[Any]) -> dict[Any, Any]:
    """A RESP2 map (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def reply_error(message: str) -> Exception:
    if message.startswith("NOSCRIPT"):
        return exceptions.NoScriptError(message)
    if message.startswith("LOADING"):  # redis-py's BusyLoadingError is a ConnectionError: Redis is down for now
        return exceptions.BusyLoadingError(message)
    if message.startswith("OOM"):  # as redis-py: shared.connection.unavailable() tells it apart
        return exceptions.OutOfMemoryError(message)
    return exceptions.ResponseError(message)


class Connection(asyncio.Protocol):
    """One socket: commands written once per loop turn, replies handed to their callers in order."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(replyError=reply_error)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (caller, give up at)
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                caller, _ = self._waiting.popleft()
                if caller.done():  # its request was cancelled
                    continue
                if isinstance(reply, Exception):
                    caller.set_exception(reply)
                else:
                    caller.set_result(reply)
        except hiredis.ProtocolError as error:
            self.close(exceptions.ConnectionError(f"Redis protocol error: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exceptions.ConnectionError(f"Redis closed the connection ({exc or 'end of stream'})"))

    def send(self, args: tuple[Arg, ...], timeout_s: float) -> asyncio.Future[Any]:
        if self.lost:
            raise exceptions.ConnectionError("connection to Redis lost")
        caller = self._loop.create_future()
        self._waiting.append((caller, self._loop.time() + timeout_s))
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # the stub says a 1-tuple
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(1, self._check_overdue)
        return caller

    def close(self, error: Exception) -> None:
        """Fail every command in flight with `error` and drop the socket."""
        self.lost = True
        if self._transport is not None:
            self._transport.abort()
        while self._waiting:
            caller, _ = self._waiting.popleft()
            if not caller.done():
                caller.set_exception(error)

    def _flush(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _check_overdue(self) -> None:
        """Replies come in order, so only the oldest command can be overdue first."""
        self._watchdog = None
        if not self._waiting:
            return
        if self._waiting[0][1] < self._loop.time():
            self.close(exceptions.TimeoutError("Redis did not answer in time"))
        else:
            self._watchdog = self._loop.call_later(1, self._check_overdue)


class PipelinedRedis:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5,
        connect_timeout_s: float = 2,
        max_blocking: int = 256,
        idle_s: float = 5,
    ) -> None:
        self._options = parse_url(url)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._shared: Connection | None = None
        self._connecting: asyncio.Future[Connection] | None = None
        self._idle: deque[tuple[Connection, float]] = deque()  # (connection, idle since), oldest first
        self._idle_s = idle_s
        self._reaper: asyncio.TimerHandle | None = None
        self._blocking_slots = asyncio.Semaphore(max_blocking)

    async def execute(self, *args: Arg) -> Any:
        connection = self._shared
        if connection is None or connection.lost:
            connection = await self._shared_connection()
        return await connection.send(args, self._timeout_s)

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except exceptions.NoScriptError:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def blocking(self, wait_ms: int, command: Callable[[int], tuple[Arg, ...]]) -> Any:
        """`command(ms)` on a connection of its own, for a command that may wait in Redis that many ms.

        With all `max_blocking` connections taken, it first waits for one to come free, and `command`
        is given what is left of `wait_ms`; if nothing is, the answer is None, as a blocking command's
        is when its time is up.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + wait_ms / 1000
        if self._blocking_slots.locked():
            try:
                async with asyncio.timeout_at(give_up_at):
                    await self._blocking_slots.acquire()
            except TimeoutError:
                return None
        else:
            await self._blocking_slots.acquire()  # at once: no timer to set up
        try:
            connection = self._idle_connection() or await self._connect()
            left_ms = max(1, round((give_up_at - loop.time()) * 1000))
            try:
                reply = await connection.send(command(left_ms), self._timeout_s + left_ms / 1000)
            except asyncio.CancelledError:
                connection.close(exceptions.ConnectionError("cancelled"))  # still blocked in Redis: drop it
                raise
            if not connection.lost:
                self._idle.append((connection, loop.time()))
                if self._reaper is None:
                    self._reaper = loop.call_later(self._idle_s, self._reap)
            return reply
        finally:
            self._blocking_slots.release()

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for connection in [*(idle for idle, _ in self._idle), *([self._shared] if self._shared else [])]:
            connection.close(exceptions.ConnectionError("client closed"))
        self._idle.clear()
        self._shared = None

    def _idle_connection(self) -> Connection | None:
        """The one used last: the others age, and close once idle for `idle_s`."""
        while self._idle:
            connection, _ = self._idle.pop()
            if not connection.lost:
                return connection
        return None

    def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        self._reaper = None
        while self._idle and self._idle[0][1] <= loop.time() - self._idle_s:
            connection, _ = self._idle.popleft()
            connection.close(exceptions.ConnectionError("idle"))
        if self._idle:
            self._reaper = loop.call_at(self._idle[0][1] + self._idle_s, self._reap)

    async def _shared_connection(self) -> Connection:
        """One connection attempt at a time, and every request waiting shares its outcome.

        Were they to queue and retry one after another, an unreachable Redis would keep the last
        of N waiting requests for N connect timeouts.
        """
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)  # a caller that gives up leaves the attempt alone

    def _connected(self, attempt: asyncio.Future[Connection]) -> None:
        self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._shared = attempt.result()

    async def _connect(self) -> Connection:
        options = self._options
        loop = asyncio.get_running_loop()
        host, port = options.get("host", "localhost"), options.get("port", 6379)
        where = options.get("path") or f"{host}:{port}"
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if "path" in options:
                    _, connection = await loop.create_unix_connection(Connection, options["path"])
                else:
                    tls = tls_context(options) if options.get("connection_class") is SSLConnection else None
                    _, connection = await loop.create_connection(Connection, host, port, ssl=tls)
        except (OSError, TimeoutError) as error:
            raise exceptions.ConnectionError(f"cannot connect to Redis at {where}: {error or 'timed out'}") from error
        try:
            if options.get("password"):
                user = [options["username"]] if options.get("username") else []
                await connection.send(("AUTH", *user, options["password"]), self._timeout_s)
            if options.get("db"):
                await connection.send(("SELECT", options["db"]), self._timeout_s)
        except BaseException:
            connection.close(exceptions.ConnectionError("handshake failed"))
            raise
        return connection


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
