"""The gateway's HTTP connections: uvicorn's httptools protocol with the limits it lacks.

httptools has no bound on a request's head: a 64 MiB header was answered, a half-sent request
stayed open forever, and enough of them used up the process's file descriptors. Here a head is
counted as it arrives (431 past MAX_HEAD_BYTES), one timer per process closes connections whose
head or body is late (408), and connections past MAX_CONNECTIONS are closed as they come. A
request whose head comes in one read, the normal case, pays two comparisons; nothing is armed
per request: the one timer looks at every connection ten times per timeout.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from services.gateway.responses import error_response
from shared.settings import Settings, get_settings

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
class Limits:
    """This process's connection limits: the settings, and the cap its open-file limit allows."""

    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @staticmethod
    @cache
    def of_this_process() -> Limits:
        settings = get_settings()
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # raised by __main__ before uvicorn started
        return Limits(
            settings.max_head_bytes,
            settings.head_timeout_s,
            settings.body_timeout_s,
            connection_cap(settings, soft),
        )


def raw_error(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole JSON error response that closes the connection, for when there is no request to answer through."""
    body = orjson.dumps({"status": status, "message": message})
    lines = [STATUS_LINE[status], *(name + b": " + value + b"\r\n" for name, value in default_headers)]
    lines += [b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]
    return b"".join(lines)


class Sweeper:
    """The one timer of a process: every tenth of the shorter timeout, it closes the connections whose
    head or body has been awaited for longer than its timeout, and reports refused connections."""

    of: ClassVar[weakref.WeakKeyDictionary[ServerState, Sweeper]] = weakref.WeakKeyDictionary()

    def __init__(self, server_state: ServerState, loop: asyncio.AbstractEventLoop, limits: Limits) -> None:
        self.connections = server_state.connections
        self.loop = loop
        self.limits = limits
        self.every = min(limits.head_timeout_s, limits.body_timeout_s) / 10
        # What each connection was waiting for at the last sweep (a head or a body, and whose), and since when.
        self.awaited: dict[GatewayProtocol, tuple[bool, object, float]] = {}
        self.refused = 0
        loop.call_later(self.every, self.sweep)

    def sweep(self) -> None:
        now, seen, self.awaited = self.loop.time(), self.awaited, {}
        for connection in list(self.connections):
            if not isinstance(connection, GatewayProtocol) or (awaited := connection.awaited()) is None:
                continue
            head, cycle = awaited
            before = seen.get(connection)
            since = before[2] if before is not None and before[:2] == awaited else now
            timeout = self.limits.head_timeout_s if head else self.limits.body_timeout_s
            if now - since < timeout:
                self.awaited[connection] = (head, cycle, since)
            elif head and not connection.head_begun():
                connection.transport.close()  # no byte of a request yet (an idle or preconnected socket): no answer
            else:
                connection.refuse(
                    408, f"The request's {'head' if head else 'body'} did not arrive within {timeout:g} s"
                )
        if self.refused:
            log.warning(
                "refused %d connection(s): this process serves at most %d at once (MAX_CONNECTIONS, and the "
                "open-file limit less %d)",
                self.refused,
                self.limits.max_connections,
                RESERVED_FDS,
            )
            self.refused = 0
        self.loop.call_later(self.every, self.sweep)


def head_size(scope: Scope) -> int:
    """A request's head as sent, give or take the spaces around each header's colon."""
    target = len(scope["raw_path"]) + len(scope["query_string"]) + 1
    return len(scope["method"]) + target + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class CheckedHead:
    """The app's stand-in while a head may be over the limit: it counts the head in progress as its
    reads come, measures each head it is given before the app sees it (431 if over), and hands the
    connection back to the app once no head is in progress."""

    def __init__(self, protocol: GatewayProtocol, app: ASGIApp) -> None:
        self.protocol = protocol
        self.app = app
        self.limit = Limits.of_this_process().max_head_bytes
        self.counting: object = None  # the scope of the head in progress it counts
        self.head_bytes = 0  # whole reads: an upper bound of that head's size

    def count(self, size: int) -> None:
        protocol = self.protocol
        if protocol.scope is not self.counting:  # this head began in this read
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


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a bounded head, head and body deadlines, and a connection cap.

    A head is in progress when the newest request's scope (made when its first byte is parsed) is not
    yet its cycle's (made when its head is complete): uvicorn's own state. So a request whose head
    comes in one read of up to CHECKED_READ bytes, the normal case, costs two comparisons more than
    in uvicorn. No attribute is added to the connection: two more, beside uvicorn's 28, measured
    0.2-0.3 us slower on every request, as much again as the checks themselves.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if server_state not in Sweeper.of:
            Sweeper.of[server_state] = Sweeper(server_state, self.loop, Limits.of_this_process())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > Limits.of_this_process().max_connections:
            Sweeper.of[self.server_state].refused += 1
            transport.close()

    def data_received(self, data: bytes) -> None:
        if len(data) > CHECKED_READ:
            self.read_checked(data)
            return
        HttpToolsProtocol.data_received(self, data)
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            self.checked_head().count(len(data))

    def read_checked(self, data: bytes) -> None:
        """A read big enough to complete a head over the limit: the heads it completes are measured."""
        checked = self.checked_head()
        HttpToolsProtocol.data_received(self, data)
        if self.head_in_progress():
            checked.count(len(data))
        elif self.app is checked:
            self.app = checked.app

    def checked_head(self) -> CheckedHead:
        if not isinstance(self.app, CheckedHead):
            self.app = CheckedHead(self, self.app)
        return self.app

    def head_in_progress(self) -> bool:
        """Until the first byte of a connection's first request, and from the first byte of each to its head's end."""
        return self.cycle is None or self.cycle.scope is not self.scope

    def head_begun(self) -> bool:
        return self.scope is not None and self.head_in_progress()

    def awaited(self) -> tuple[bool, object] | None:
        """What the server waits for from the client: (True, cycle) a head, (False, cycle) a body, or None."""
        cycle = self.cycle
        if self.head_in_progress():
            return True, cycle
        if cycle.response_complete:
            # Bytes of a next request have come (they stop uvicorn's keep-alive timer) but no head has begun.
            return (True, cycle) if self.timeout_keep_alive_task is None else None
        return (False, cycle) if cycle.more_body else None

    def shutdown(self) -> None:
        """On SIGTERM uvicorn closes idle connections and unfinished heads; an unfinished body is closed
        too (its request has not begun), rather than waited for up to GRACEFUL_SHUTDOWN_S; and the
        app ends its event streams (ON_SHUTDOWN), which would otherwise never end."""
        if self.awaited() is not None:
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
