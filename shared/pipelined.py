"""The gateway's Redis client, and the workers' loop's: one pipelined connection, plus one per blocking read.

redis-py spends far more CPU on each command (a pool checkout that probes the socket, retry and
timeout wrappers, packing in Python) than one shared, pipelined connection does: several times
the throughput on the same 2 cores (docs/benchmarks.md has the figures). So the gateway's commands
(services/gateway/store.py) come here, and so do the workers' reads and scripts (shared/worker.py).
Every command of every concurrent caller goes down one connection, all those of one event-loop
turn in one write; hiredis parses the replies, which come back in order. A blocking read (XREAD
BLOCK) would hold that connection up, so each takes one of its own from a pool: at most
`max_blocking` of them, so a burst of writes cannot take all of Redis's clients (maxclients), and
each closes after `idle_s` unused, so a burst leaves none behind.

It raises redis-py's exception classes, so callers handle both clients alike (shared.connection's
REDIS_DOWN and unavailable()). It speaks RESP2, and takes host, port, password, database, TLS and Unix sockets from
the same REDIS_URL as redis-py. A dropped connection fails the commands in flight (the gateway
answers 503) and the next command reconnects; a command unanswered after `timeout_s` drops it.
On a Redis Cluster (`discover`) it keeps one such connection per master, and routes (PipelinedRedis).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis import exceptions
from redis.connection import SSLConnection, parse_url
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

from shared import keys

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


def read_entries(answer: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD / XREADGROUP answer (RESP2), each its id and its fields. A
    pending entry trimmed from the stream comes without fields: empty here (a worker finds it poison)."""
    if not answer:
        return []
    ((_, entries),) = answer
    return [(entry_id, as_map(fields) if fields else {}) for entry_id, fields in entries]


def reply_error(message: str) -> Exception:
    if message.startswith("NOSCRIPT"):
        return exceptions.NoScriptError(message)
    if message.startswith("LOADING"):  # redis-py's BusyLoadingError is a ConnectionError: Redis is down for now
        return exceptions.BusyLoadingError(message)
    if message.startswith("MOVED "):  # on a cluster: "MOVED <slot> <host>:<port>"
        return exceptions.MovedError(message.removeprefix("MOVED "))
    if message.startswith("ASK "):
        return exceptions.AskError(message.removeprefix("ASK "))
    if message.startswith("OOM"):  # as redis-py: shared.connection.unavailable() tells it apart
        return exceptions.OutOfMemoryError(message)
    if message.startswith("CLUSTERDOWN"):
        return exceptions.ClusterDownError(message)
    if message.startswith("TRYAGAIN"):
        return exceptions.TryAgainError(message)
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


@dataclass(eq=False)
class Server:
    """One Redis server: where it is (redis-py's URL options), its shared connection, the attempt to open it."""

    options: dict[str, Any]
    shared: Connection | None = None
    connecting: asyncio.Future[Connection] | None = None

    @property
    def where(self) -> str:
        options = self.options
        return str(options.get("path") or f"{options.get('host', 'localhost')}:{options.get('port', 6379)}")


class PipelinedRedis:
    """The client of one Redis, or of a Redis Cluster once `discover` has found one.

    On a cluster each master is a `Server` with a pipelined connection of its own, opened when a
    command first goes there, and each command goes to the master of its key's slot: the caller
    names the key that routes it (`route`; a script's first key), and a command without one goes
    to the server of the URL. MOVED re-reads the slot map (CLUSTER SLOTS) and sends the command
    once more, to the new owner; ASK sends it, after ASKING, to the node the slot is moving to. A
    lost master fails only the commands for its slots, with ConnectionError, until it is back.
    On a single Redis nothing is hashed: `_slots` is None and every command takes the first branch.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5,
        connect_timeout_s: float = 2,
        max_blocking: int = 256,
        idle_s: float = 5,
    ) -> None:
        self._seed = Server(parse_url(url))
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._idle: deque[tuple[Connection, Server, float]] = deque()  # (connection, to, idle since), oldest first
        self._idle_s = idle_s
        self._reaper: asyncio.TimerHandle | None = None
        self._blocking_slots = asyncio.Semaphore(max_blocking)
        self._slots: list[Server | None] | None = None  # on a cluster: each slot's master
        self._servers: dict[str, Server] = {}  # on a cluster: the masters by address
        self._shard_tags: list[str] | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._refreshed_at = -math.inf

    @property
    def shard_tags(self) -> list[str] | None:
        """On a cluster, a hash tag in a slot of each master (keys.shard_tags); None on a single Redis."""
        return self._shard_tags

    async def discover(self) -> None:
        """Ask the server of the URL whether it is part of a Redis Cluster, and if so read its slot map."""
        info: bytes = await self.execute("INFO", "cluster")
        if b"cluster_enabled:1" in info:
            await self.refresh_slots()

    def master_of(self, key: str) -> str:
        """The address of the master serving `key` on a cluster, as far as the slot map read last
        knows; "" on a single Redis. Raises ConnectionError when no master serves its slot."""
        return "" if self._slots is None else self._owner(key).where

    async def execute(self, *args: Arg, route: Arg | None = None) -> Any:
        """Send one command; on a cluster, to the master of `route`'s slot (any server when None)."""
        if self._slots is not None:
            return await self._execute_routed(args, route)
        connection = self._seed.shared  # _send inlined: every command of a single Redis passes here
        if connection is None or connection.lost:
            connection = await self._shared_connection(self._seed)
        return await connection.send(args, self._timeout_s)

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Arg], route: Arg | None = None) -> Any:
        """Run a script, routed by its first key (a script's keys share one slot on a cluster), or by
        `route` when it has none."""
        route = keys[0] if keys else route
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, route=route)
        except exceptions.NoScriptError:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args, route=route)

    async def blocking(self, wait_ms: int, command: Callable[[int], tuple[Arg, ...]], route: Arg | None = None) -> Any:
        """`command(ms)` on a connection of its own, for a command that may wait in Redis that many ms.

        With all `max_blocking` connections taken, it first waits for one to come free, and `command`
        is given what is left of `wait_ms`; if nothing is, the answer is None, as a blocking command's
        is when its time is up. On a cluster it goes to the master of `route`'s slot, and once more
        to the new one after a MOVED.
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
            try:
                return await self._block_on(self._owner(route), command, give_up_at)
            except exceptions.MovedError as moved:
                await self.refresh_slots()
                return await self._block_on(self._server_at(moved.host, moved.port), command, give_up_at)
        finally:
            self._blocking_slots.release()

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        shared = [server.shared for server in (self._seed, *self._servers.values()) if server.shared is not None]
        for connection in [*(idle for idle, _, _ in self._idle), *shared]:
            connection.close(exceptions.ConnectionError("client closed"))
        self._idle.clear()
        self._seed.shared = None
        self._servers.clear()

    async def refresh_slots(self) -> None:
        """Read the slot map again; callers at the same moment share one CLUSTER SLOTS."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._load_slots())
            self._refreshing.add_done_callback(self._refreshed)
        await asyncio.shield(self._refreshing)

    def _refreshed(self, attempt: asyncio.Future[None]) -> None:
        self._refreshing = None
        self._refreshed_at = asyncio.get_running_loop().time()
        if not attempt.cancelled():
            attempt.exception()  # retrieved: a background refresh's failure is the next command's to meet

    async def _load_slots(self) -> None:
        """CLUSTER SLOTS from the first server that answers: the URL's, then the masters known."""
        failure: Exception | None = None
        for server in [self._seed, *self._servers.values()]:
            try:
                reply = await self._send(server, ("CLUSTER", "SLOTS"))
            except (exceptions.ConnectionError, exceptions.TimeoutError) as error:
                failure = error
                continue
            self._use_slot_map(reply, server)
            return
        assert failure is not None
        raise failure

    def _use_slot_map(self, reply: list[list[Any]], source: Server) -> None:
        """Each slot's master from a CLUSTER SLOTS answer ([first, last, [host, port, id], replicas...])."""
        owners: list[Server | None] = [None] * SLOTS
        for first, last, (host, port, *_), *_replicas in reply:
            master = self._server_at(host.decode() or source.options.get("host", "localhost"), int(port))
            owners[first : last + 1] = [master] * (last - first + 1)
        masters = list(dict.fromkeys(owner for owner in owners if owner is not None))
        self._shard_tags = list(keys.shard_tags(masters, owners.__getitem__).values())
        self._slots = owners

    def _server_at(self, host: str, port: int) -> Server:
        address = f"{host}:{port}"
        server = self._servers.get(address)
        if server is None:
            server = self._servers[address] = Server({**self._seed.options, "host": host, "port": port})
        return server

    def _owner(self, route: Arg | None) -> Server:
        if self._slots is None or route is None:
            return self._seed
        slot = key_slot(route if isinstance(route, bytes) else str(route).encode())
        owner = self._slots[slot]
        if owner is None:
            raise exceptions.ConnectionError(f"no master serves hash slot {slot} of the Redis Cluster")
        return owner

    async def _execute_routed(self, args: tuple[Arg, ...], route: Arg | None) -> Any:
        try:
            return await self._send(self._owner(route), args)
        except exceptions.MovedError as moved:  # the slot has a new master: learn the map, follow once
            await self.refresh_slots()
            return await self._send(self._server_at(moved.host, moved.port), args)
        except exceptions.AskError as ask:  # the slot is moving and the key has gone ahead
            return await self._asking(self._server_at(ask.host, ask.port), args)
        except (exceptions.ConnectionError, exceptions.TimeoutError):
            self._refresh_soon()  # a master lost: its slots may have moved to another
            raise

    async def _asking(self, server: Server, args: tuple[Arg, ...]) -> Any:
        """ASKING and the command, one after the other down one connection: ASKING lasts one command."""
        connection = await self._shared_connection(server)
        asking = connection.send(("ASKING",), self._timeout_s)
        answer = connection.send(args, self._timeout_s)
        _, reply = await asyncio.gather(asking, answer)
        return reply

    def _refresh_soon(self) -> None:
        """Re-read the slot map in the background, at most once a second."""
        loop = asyncio.get_running_loop()
        if self._refreshing is None and loop.time() - self._refreshed_at > 1:
            self._refreshing = asyncio.ensure_future(self._load_slots())
            self._refreshing.add_done_callback(self._refreshed)

    async def _send(self, server: Server, args: tuple[Arg, ...]) -> Any:
        connection = server.shared
        if connection is None or connection.lost:
            connection = await self._shared_connection(server)
        return await connection.send(args, self._timeout_s)

    async def _block_on(self, server: Server, command: Callable[[int], tuple[Arg, ...]], give_up_at: float) -> Any:
        loop = asyncio.get_running_loop()
        connection = self._idle_connection(server) or await self._connect(server)
        left_ms = max(1, round((give_up_at - loop.time()) * 1000))
        try:
            reply = await connection.send(command(left_ms), self._timeout_s + left_ms / 1000)
        except asyncio.CancelledError:
            connection.close(exceptions.ConnectionError("cancelled"))  # still blocked in Redis: drop it
            raise
        if not connection.lost:
            self._idle.append((connection, server, loop.time()))
            if self._reaper is None:
                self._reaper = loop.call_later(self._idle_s, self._reap)
        return reply

    def _idle_connection(self, server: Server) -> Connection | None:
        """The one to `server` used last: the others age, and close once idle for `idle_s`."""
        for index in range(len(self._idle) - 1, -1, -1):
            connection, to, _ = self._idle[index]
            if to is server:
                del self._idle[index]  # the last, on a single Redis
                if not connection.lost:
                    return connection
        return None

    def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        self._reaper = None
        while self._idle and self._idle[0][2] <= loop.time() - self._idle_s:
            connection, _, _ = self._idle.popleft()
            connection.close(exceptions.ConnectionError("idle"))
        if self._idle:
            self._reaper = loop.call_at(self._idle[0][2] + self._idle_s, self._reap)

    async def _shared_connection(self, server: Server) -> Connection:
        """One connection attempt at a time, and every request waiting shares its outcome.

        Were they to queue and retry one after another, an unreachable Redis would keep the last
        of N waiting requests for N connect timeouts.
        """
        if server.connecting is None:
            server.connecting = asyncio.ensure_future(self._connect(server))
            server.connecting.add_done_callback(lambda attempt: self._connected(server, attempt))
        return await asyncio.shield(server.connecting)  # a caller that gives up leaves the attempt alone

    @staticmethod
    def _connected(server: Server, attempt: asyncio.Future[Connection]) -> None:
        server.connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            server.shared = attempt.result()

    async def _connect(self, server: Server) -> Connection:
        options = server.options
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if "path" in options:
                    _, connection = await loop.create_unix_connection(Connection, options["path"])
                else:
                    tls = tls_context(options) if options.get("connection_class") is SSLConnection else None
                    host, port = options.get("host", "localhost"), options.get("port", 6379)
                    _, connection = await loop.create_connection(Connection, host, port, ssl=tls)
        except (OSError, TimeoutError) as error:
            raise exceptions.ConnectionError(
                f"cannot connect to Redis at {server.where}: {error or 'timed out'}"
            ) from error
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
