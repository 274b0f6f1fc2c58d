"""The gateway's HTTP connections: uvicorn's httptools protocol with the limits it lacks.

httptools has no bound on a request's head: a 64 MiB header was answered, a half-sent request
stayed open forever, and enough of them used up the process's file descriptors. uvicorn parses
every request a read holds and reads again after each answer: one connection pipelining requests it
never read the answers of grew the process by gigabytes. Here a read is parsed a head at a time
while the connection has fewer than MAX_PIPELINED requests queued (parsed, not yet begun) and its
client reads what it is sent; the rest waits, unparsed, and reading pauses. A head is counted as it arrives (431 past
MAX_HEAD_BYTES); one timer per process closes connections whose head or body is late (408) or whose
client reads nothing for SEND_TIMEOUT_S; connections past MAX_CONNECTIONS, or past
MAX_CONNECTIONS_PER_ADDRESS from one address, are closed as they come. Malformed requests get a
JSON 400, and uvicorn's line about each is rate-limited. Nothing is armed per request: the one
timer looks at every connection ten times per timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import socket
import struct
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, ClassVar

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from services.gateway.responses import error_response
from shared.settings import Settings, get_settings, parse_networks

log = logging.getLogger(__name__)

# Descriptors a gateway process needs besides its clients: Redis (a pool of up to 256 and the hot
# path's one), static files being sent, the event loop, stdio. MAX_CONNECTIONS is capped below the
# open-file limit by this much, so that the cap, not EMFILE, is what a flood of connections meets.
RESERVED_FDS = 512
# A read of up to this many bytes cannot complete a head over MAX_HEAD_BYTES (at least this much) that
# began in it, so only bigger reads, and heads left incomplete by a read, have their head measured.
CHECKED_READ = 8 * 1024
# The app's lifespan state may hold, under this key, what ends its long-lived responses (the live
# event streams): uvicorn waits for every response to end before it stops, and its shutdown tells
# each connection, through its protocol, to finish.
ON_SHUTDOWN = "cachequest.on_shutdown"
HEAD_END = b"\r\n\r\n"
# uvicorn's own lines about requests it cannot parse: at most one of each per this many seconds.
PARSER_LOG_EVERY_S = 10.0
MALFORMED = "The request is not valid HTTP/1.1"


class NoRoom(Exception):
    """The open-file limit leaves no room for connections."""


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (gateway processes inherit it); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # a platform that refuses: keep the soft limit, make_room() says what it allows
    return soft


def connection_cap(settings: Settings, file_limit: int) -> int:
    """MAX_CONNECTIONS, or fewer if the open-file limit leaves less room."""
    return max(0, min(settings.max_connections, file_limit - RESERVED_FDS))


def make_room(settings: Settings) -> None:
    """At start-up: the file limit raised, and a warning (or NoRoom) if it still caps connections."""
    file_limit = raise_file_limit()
    cap = connection_cap(settings, file_limit)
    if cap < settings.max_connections:
        problem = f"the open-file limit is {file_limit} and {RESERVED_FDS} of those are kept for Redis and files"
        fix = "raise the hard limit (`ulimit -Hn`, LimitNOFILE= in systemd, --ulimit nofile= in Docker)"
        fix += " or lower MAX_CONNECTIONS"
        if cap < 16:  # the least MAX_CONNECTIONS may be
            raise NoRoom(f"{problem}: no room for connections; {fix}")
        log.warning(
            "%s: each process serves at most %d connections, not %d; %s", problem, cap, settings.max_connections, fix
        )


@dataclass(frozen=True)
class ConnectionLimits:
    """This process's connection limits: the settings, and the cap its open-file limit allows."""

    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_per_address: int
    max_pipelined: int
    send_timeout_s: float
    trusted_peers: str  # FORWARDED_ALLOW_IPS

    @staticmethod
    @cache
    def of_this_process() -> ConnectionLimits:
        settings = get_settings()
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # raised by __main__ before uvicorn started
        return ConnectionLimits(
            settings.max_head_bytes,
            settings.head_timeout_s,
            settings.body_timeout_s,
            connection_cap(settings, soft),
            settings.max_connections_per_address,
            settings.max_pipelined,
            settings.send_timeout_s,
            settings.forwarded_allow_ips,
        )

    def counted(self, host: str) -> bool:
        """Whether connections from `host` count against MAX_CONNECTIONS_PER_ADDRESS: not a trusted proxy's."""
        return not self.trusted_peers or is_untrusted(host, self.trusted_peers)


@lru_cache(maxsize=4096)
def is_untrusted(host: str, trusted_peers: str) -> bool:
    """Cached: parsing the address is what costs, and the same ones come again and again."""
    if "*" in trusted_peers.split(","):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not any(address in network for network in parse_networks(trusted_peers, "FORWARDED_ALLOW_IPS"))


def address_key(host: str) -> str:
    """What MAX_CONNECTIONS_PER_ADDRESS counts: the IPv4 address, or the IPv6 /64 (one subscriber's
    block: an attacker has 2^64 addresses, a household one /64)."""
    if ":" not in host or "." in host:  # IPv4, or IPv4 mapped into IPv6
        return host
    try:
        return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])[:8].hex()
    except OSError:
        return host


def raw_error(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole JSON error response that closes the connection, for when there is no request to answer through."""
    body = orjson.dumps({"status": status, "message": message})
    lines = [STATUS_LINE[status], *(name + b": " + value + b"\r\n" for name, value in default_headers)]
    lines += [b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]
    return b"".join(lines)


# What a connection may be waiting for from its client, for longer than the timeout of each.
HEAD, BODY, SEND = "head", "body", "send"


class Sweeper:
    """The one timer of a process: every tenth of the shortest timeout, it closes the connections whose
    head or body has been awaited for longer than its timeout, or whose client has read nothing of its
    answers for SEND_TIMEOUT_S; and it counts each address's connections and reports refused ones."""

    of: ClassVar[weakref.WeakKeyDictionary[ServerState, Sweeper]] = weakref.WeakKeyDictionary()

    def __init__(self, server_state: ServerState, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> None:
        self.connections = server_state.connections
        self.loop = loop
        self.limits = limits
        self.timeouts = {HEAD: limits.head_timeout_s, BODY: limits.body_timeout_s, SEND: limits.send_timeout_s}
        self.every = min(self.timeouts.values()) / 10
        # What each connection was waiting for at the last sweep (its kind, and whose), and since when.
        self.awaited: dict[GatewayProtocol, tuple[str, object, float]] = {}
        self.per_address: Counter[str] = Counter()
        self.refused = 0  # over MAX_CONNECTIONS
        self.refused_by_address = 0
        self.stalled = 0  # cut: the client read nothing for SEND_TIMEOUT_S
        logging.getLogger("uvicorn.error").addFilter(ParserLines())
        loop.call_later(self.every, self.sweep)

    def sweep(self) -> None:
        now, seen, self.awaited = self.loop.time(), self.awaited, {}
        for connection in list(self.connections):
            if not isinstance(connection, GatewayProtocol) or (awaited := connection.awaited()) is None:
                continue
            kind, _whose = awaited
            before = seen.get(connection)
            since = before[2] if before is not None and before[:2] == awaited else now
            timeout = self.timeouts[kind]
            if now - since < timeout:
                self.awaited[connection] = (*awaited, since)
            elif kind == SEND:
                self.stalled += 1
                connection.cut()
            elif kind == HEAD and not connection.head_begun():
                connection.transport.close()  # no byte of a request yet (an idle or preconnected socket): no answer
            else:
                connection.refuse(408, f"The request's {kind} did not arrive within {timeout:g} s")
        self.report()
        self.loop.call_later(self.every, self.sweep)

    def report(self) -> None:
        """One line per sweep for what was refused or cut, however many: a flood must not flood the log."""
        limits = self.limits
        if self.refused:
            log.warning(
                "refused %d connection(s): this process serves at most %d at once (MAX_CONNECTIONS, and the "
                "open-file limit less %d)",
                self.refused,
                limits.max_connections,
                RESERVED_FDS,
            )
        if self.refused_by_address:
            log.warning(
                "refused %d connection(s) from addresses that already held %d (MAX_CONNECTIONS_PER_ADDRESS)",
                self.refused_by_address,
                limits.max_per_address,
            )
        if self.stalled:
            log.warning(
                "closed %d connection(s) whose client read none of its answers for %g s (SEND_TIMEOUT_S)",
                self.stalled,
                limits.send_timeout_s,
            )
        self.refused = self.refused_by_address = self.stalled = 0

    def admit(self, host: str | None) -> bool:
        """Whether a new connection from `host` fits under both caps; counted if it does."""
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            self.refused += 1
            return False
        if host is not None and limits.counted(host):
            key = address_key(host)
            if self.per_address[key] >= limits.max_per_address:
                self.refused_by_address += 1
                return False
            self.per_address[key] += 1
        return True

    def release(self, host: str) -> None:
        if self.limits.counted(host):
            key = address_key(host)
            left = self.per_address[key] - 1
            if left > 0:
                self.per_address[key] = left
            else:
                del self.per_address[key]


class ParserLines(logging.Filter):
    """uvicorn logs a WARNING for each request it cannot parse or upgrade, which a client can send by
    the thousand a second: each such line at most once per PARSER_LOG_EVERY_S, with how many it stands for."""

    PREFIXES = ("Invalid HTTP request", "Unsupported upgrade", "No supported WebSocket")

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}
        self.dropped: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str) or not message.startswith(self.PREFIXES):
            return True
        now = time.monotonic()
        if now - self.last.get(message, -PARSER_LOG_EVERY_S) < PARSER_LOG_EVERY_S:
            self.dropped[message] += 1
            return False
        self.last[message] = now
        if dropped := self.dropped.pop(message, 0):
            record.msg = f"{message} (and {dropped} more like it in the last {PARSER_LOG_EVERY_S:g} s, not logged)"
        return True


def head_size(scope: Scope) -> int:
    """A request's head as sent, give or take the spaces around each header's colon."""
    target = len(scope["raw_path"]) + len(scope["query_string"]) + 1
    return len(scope["method"]) + target + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class CheckedHead:
    """The app's stand-in while a head may be over the limit: it counts the head in progress as its
    bytes come, measures each head it is given before the app sees it (431 if over), and hands the
    connection back to the app once no head is in progress."""

    def __init__(self, protocol: GatewayProtocol, app: ASGIApp) -> None:
        self.protocol = protocol
        self.app = app
        self.limit = ConnectionLimits.of_this_process().max_head_bytes
        self.counting: object = None  # the scope of the head in progress it counts
        self.head_bytes = 0  # that head's bytes so far

    def count(self, size: int) -> None:
        protocol = self.protocol
        if protocol.scope is not self.counting:  # this head began in these bytes
            self.counting, self.head_bytes = protocol.scope, 0
        self.head_bytes += size
        if self.head_bytes > self.limit:
            protocol.refuse(431, f"The request's head is over the {self.limit}-byte limit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = self.protocol
        if protocol.app is self and not protocol.head_in_progress():
            protocol.app = self.app
        if head_size(scope) > self.limit:
            message = f"The request's head is over the {self.limit}-byte limit"
            await error_response(431, message, {"connection": "close"})(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Flow(FlowControl):
    """uvicorn's flow control, which reads again after every answer and whenever a body is awaited,
    made to read only while the connection has room for another request (MAX_PIPELINED parsed and
    not yet begun) and its client takes what it is sent; with what was read beyond that room, unparsed."""

    def __init__(self, transport: asyncio.Transport, protocol: GatewayProtocol, host: str | None) -> None:
        super().__init__(transport)
        self.protocol = protocol
        self.host = host  # the peer's address as admitted: released as the connection goes
        self.limit = protocol.limits.max_pipelined
        self.held = b""  # read past the room: parsed once there is room again
        self.releasing = False  # a parse of `held` is scheduled
        self.pauses = 0  # times writing paused: the sweeper tells a stalled client from a slow one by it
        self.body_bytes = 0  # body bytes the parser gave in the bytes being parsed: not head bytes
        # The request being answered while others queue behind it, which uvicorn does not tell of a
        # lost connection (it marks only the newest): its answer would be written to a closed transport.
        self.running: RequestResponseCycle | None = None

    def room(self) -> bool:
        """Fewer than MAX_PIPELINED requests parsed and not yet begun (data_received tests it inline)."""
        return len(self.protocol.pipeline) < self.limit

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.pauses += 1
        super().pause_writing()
        self.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.resume_reading()

    def resume_reading(self) -> None:
        if self.write_paused or not self.room() or self.protocol.transport.is_closing():
            return
        if self.held:
            if not self.releasing:
                self.releasing = True
                # Not now: uvicorn calls this before starting the next request it queued, which a
                # request parsed now would overtake.
                self.protocol.loop.call_soon(self.release)
            return
        super().resume_reading()

    def release(self) -> None:
        self.releasing = False
        protocol = self.protocol
        if protocol.transport.is_closing() or not self.held or self.write_paused or not self.room():
            return
        held, self.held = self.held, b""
        protocol.data_received(held)
        self.resume_reading()


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a bounded head, head, body and send deadlines, bounded
    pipelining, connection caps, and JSON for malformed requests.

    A head is in progress when the newest request's scope (made when its first byte is parsed) is not
    yet its cycle's (made when its head is complete): uvicorn's own state. A read is parsed a head at a
    time (up to each `\\r\\n\\r\\n`): a request's head cannot end elsewhere, so each part adds at most one
    request to the queue, and the bytes of a head in progress are those after the last head's end that
    were no body. So a read holding one request, the normal case, costs one search and a few
    comparisons more than in uvicorn. The connection's own state is kept in its Flow: two more
    attributes here, beside uvicorn's 28, measured slower on every request.
    """

    flow: Flow

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if server_state not in Sweeper.of:
            Sweeper.of[server_state] = Sweeper(server_state, self.loop, ConnectionLimits.of_this_process())

    @property
    def limits(self) -> ConnectionLimits:
        return ConnectionLimits.of_this_process()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refused, if over a cap, before uvicorn sets the connection up: a flood costs little each."""
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else None
        if not Sweeper.of[self.server_state].admit(host):
            transport.abort()
            return
        super().connection_made(transport)
        self.flow = Flow(transport, self, host)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # refused in connection_made
            return
        flow = self.flow
        if flow.host is not None:
            Sweeper.of[self.server_state].release(flow.host)
        if flow.running is not None:
            flow.running.disconnected = True
            flow.running.message_event.set()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """Before uvicorn begins the next request queued, which is then the one running."""
        pipeline = self.pipeline
        self.flow.running = pipeline[-1][0] if len(pipeline) > 1 else None  # the newest is uvicorn's to tell
        super().on_response_complete()

    def cut(self) -> None:
        """Close at once, dropping what the client has not read, in this process and in the kernel: a
        close would wait for the client to read it, and the kernel keeps trying after the process let go."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Parse `data` a head at a time while there is room for another request; hold the rest."""
        flow = self.flow
        size = len(data)
        checked = self.checked_head() if size > CHECKED_READ else None
        start = 0
        while True:
            if len(self.pipeline) >= flow.limit:
                flow.held = data[start:]
                flow.pause_reading()
                break
            end = data.find(HEAD_END, start) + len(HEAD_END)
            if end < len(HEAD_END):
                end = size
            flow.body_bytes = 0
            running = self.cycle
            if start == 0 and end == size:
                HttpToolsProtocol.data_received(self, data)
            else:
                HttpToolsProtocol.data_received(self, memoryview(data)[start:end])  # type: ignore[arg-type]
            if self.pipeline and flow.running is None:  # the first request queued: `running` is answered
                flow.running = running
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:  # a head in progress: count its bytes
                self.checked_head().count(end - start - flow.body_bytes)
            if end == size or self.transport.is_closing():
                break
            start = end
        if checked is not None and self.app is checked and not self.head_in_progress():
            self.app = checked.app

    def on_body(self, body: bytes) -> None:
        self.flow.body_bytes += len(body)
        super().on_body(body)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what it cannot parse, in JSON as every error is."""
        self.refuse(400, MALFORMED)

    def checked_head(self) -> CheckedHead:
        if not isinstance(self.app, CheckedHead):
            self.app = CheckedHead(self, self.app)
        return self.app

    def head_in_progress(self) -> bool:
        """Until the first byte of a connection's first request, and from the first byte of each to its head's end."""
        return self.cycle is None or self.cycle.scope is not self.scope

    def head_begun(self) -> bool:
        return self.scope is not None and self.head_in_progress()

    def awaited(self) -> tuple[str, object] | None:
        """What the server waits for from the client, and for whose sake: a head or a body (of which
        request), that it read what it was sent (SEND: since which pause), or None."""
        flow = self.flow
        if flow.write_paused:
            return SEND, flow.pauses
        if self.transport.is_closing():
            return SEND, None  # closed with answers still buffered: gone once the client reads them
        if flow.read_paused:
            return None  # the gateway is not reading: its queued requests are being answered
        cycle = self.cycle
        if self.head_in_progress():
            return HEAD, cycle
        if cycle.response_complete:
            # Bytes of a next request have come (they stop uvicorn's keep-alive timer) but no head has begun.
            return (HEAD, cycle) if self.timeout_keep_alive_task is None else None
        return (BODY, cycle) if cycle.more_body else None

    def shutdown(self) -> None:
        """On SIGTERM uvicorn closes idle connections and unfinished heads; an unfinished body is closed
        too (its request has not begun), rather than waited for up to GRACEFUL_SHUTDOWN_S; and the
        app ends its event streams (ON_SHUTDOWN), which would otherwise never end."""
        awaited = self.awaited()
        if awaited is not None and awaited[0] != SEND:
            self.transport.close()
        else:
            if (end_streams := self.app_state.get(ON_SHUTDOWN)) is not None:
                end_streams()
            super().shutdown()

    def refuse(self, status: int, message: str) -> None:
        """Answer with a JSON error and close: the request cannot go on."""
        if not self.transport.is_closing():
            log.debug("%s %s: %s", self.client, status, message)
            self.transport.write(raw_error(status, message, self.server_state.default_headers))
            self.transport.close()
