"""`GET /api/leaderboard/{key}/live`: a board's top 10 as server-sent events, from one Redis read per process.

The leaderboard workers announce each change of a board's top on the board's live stream
(keys.live_top: a `top.announce` follow-up of every score, shared/apply_commands.lua). Each gateway
process follows those streams with one task, started in the app's lifespan: it reads every board's
top and its stream's last id together, then waits on all the streams in one `XREAD BLOCK` (on a
Redis Cluster the streams live in different slots: one read per board), keeps each board's newest
top as a ready-made event, and hands that one object to every listener of the board. So a thousand
listeners cost Redis what one does.

A listener holds only the newest event not yet sent to it (a mailbox of one): a slow client skips
to the newest top when it catches up, its memory never grows, and the others never wait for it. A
Redis that is away is retried with backoff while the listeners keep their streams and heartbeats;
once it is back, the tops are read again, so what changed meanwhile arrives as one event. Boards are public, so no
session is needed; the caps are per process: LIVE_MAX_PER_ADDRESS streams per address (429), and
LIVE_MAX_LISTENERS in all (503). On SIGTERM every stream ends cleanly at once (server.ON_SHUTDOWN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.gateway.layers import HEAD_AS_GET, Call
from services.gateway.leaderboard import check_board, ranked
from services.gateway.responses import error_response
from services.gateway.routing import ERRORS, Route
from services.gateway.sessions import client_address
from services.gateway.store import Store
from shared import keys
from shared.connection import unavailable
from shared.protocol import LIVE_TOP_SIZE
from shared.settings import Settings

log = logging.getLogger(__name__)

LISTENERS = Gauge(
    "cachequest_live_listeners", "Live-top event streams open, over every gateway process", multiprocess_mode="livesum"
)
SEP = "\n"
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=SEP).encode()
READ_WAIT_MS = 10_000  # how long one XREAD waits; it is issued again at once
FIRST_RETRY_S, LAST_RETRY_S = 0.1, 5.0  # the backoff while Redis is away


def top_event(rows: Sequence[tuple[str, int | float]]) -> bytes:
    """Event `top`: the list read's shape, each entry with its 1-based rank."""
    return b"event: top\ndata: " + orjson.dumps(ranked(rows, 1)) + b"\n\n"


class Mailbox:
    """One listener's next event. Only the newest is kept: a listener that falls behind skips to it.

    A bare future, not an asyncio.Event (a deque, a set and a future more): every object a listener
    keeps alive is one more that each full garbage collection walks (docs/benchmarks.md).
    """

    __slots__ = ("_event", "_waiter", "open")

    def __init__(self) -> None:
        self._event: bytes | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.open = True

    def put(self, event: bytes) -> None:
        self._event = event
        self._wake()

    def beat(self) -> None:
        """A heartbeat, unless an event is already waiting to go (it keeps the connection alive as well)."""
        if self._event is None:
            self.put(HEARTBEAT)

    def close(self) -> None:
        self.open = False
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> bytes | None:
        """The newest event not yet taken; None once the mailbox is closed."""
        while self.open and self._event is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event, self._event = self._event, None
        return event if self.open else None

    async def close_on_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.close()


@dataclass(eq=False)
class Board:
    """A board as this process follows it: its newest top, ready to send, and who listens."""

    key: str
    stream: str
    event: bytes | None = None  # None until the first read of the board
    last_id: bytes = b"0-0"  # of the last entry of the live stream seen
    listeners: set[Mailbox] = field(default_factory=set)

    def publish(self, rows: Sequence[tuple[str, int | float]]) -> None:
        event = top_event(rows)
        if event == self.event:  # read again after a reconnect, or announced twice
            return
        self.event = event
        for mailbox in self.listeners:
            mailbox.put(event)


class LiveTops:
    """This process's live listeners, the caps on them, and its one reader of the live streams."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        boards = (keys.leaderboard(name) for name in settings.leaderboard_maps)
        self.boards = {key: Board(key, keys.live_top(key)) for key in boards}
        self.per_address: dict[str, int] = {}
        self.listening = 0
        self.ending = False
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.follow_all(), name="live tops"),
            asyncio.create_task(self.beat(), name="live heartbeats"),
        ]

    async def aclose(self) -> None:
        self.end_all()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def end_all(self) -> None:
        """End every stream cleanly and admit no more: the server is shutting down (server.ON_SHUTDOWN)."""
        if self.ending:
            return
        self.ending = True
        for board in self.boards.values():
            for mailbox in board.listeners:
                mailbox.close()

    async def beat(self) -> None:
        """Every listener's heartbeat from one task, not a timer each."""
        while True:
            await asyncio.sleep(self.settings.live_heartbeat_s)
            for board in self.boards.values():
                for mailbox in board.listeners:
                    mailbox.beat()

    async def follow_all(self) -> None:
        """One read for every board on a single Redis; one per board on a cluster (a read is in one slot)."""
        boards = list(self.boards.values())
        groups = [[board] for board in boards] if self.store.is_cluster else [boards]
        await asyncio.gather(*(self.follow(group) for group in groups))

    async def follow(self, boards: list[Board]) -> None:
        """Read the boards' tops, then each announcement after them; after any failure, back off and
        read the tops again: what was announced meanwhile may be trimmed, the board itself is not."""
        retry_s = FIRST_RETRY_S
        current = False
        while True:
            try:
                if not current:
                    await self.read_tops(boards)
                    current, retry_s = True, FIRST_RETRY_S
                after = {board.stream: board.last_id for board in boards}
                found = await self.store.live_announcements(after, READ_WAIT_MS)
                for board in boards:
                    if board.stream in found:
                        board.last_id, rows = found[board.stream]
                        board.publish(rows)
            except Exception as error:
                reason = unavailable(error)
                if reason is None:
                    log.exception("live tops: reading the announcements failed; retrying in %.1f s", retry_s)
                else:
                    log.warning("live tops: Redis %s (%s); retrying in %.1f s", reason, error, retry_s)
                current = False
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, LAST_RETRY_S)

    async def read_tops(self, boards: list[Board]) -> None:
        snapshots = await asyncio.gather(
            *(self.store.live_snapshot(board.key, board.stream, LIVE_TOP_SIZE) for board in boards)
        )
        for board, (last_id, rows) in zip(boards, snapshots, strict=True):
            board.last_id = last_id
            board.publish(rows)

    def join(self, board: Board, mailbox: Mailbox, address: str) -> Response | None:
        """Admit a listener, its first event the board's current top; or the answer that refuses it."""
        held = self.per_address.get(address, 0)
        settings = self.settings
        if held >= settings.live_max_per_address:
            message = f"At most {settings.live_max_per_address} live streams per address; close one first"
            return error_response(429, message, {"Retry-After": "10"})
        if self.ending:
            return error_response(503, "The server is shutting down; try again shortly", {"Retry-After": "1"})
        if self.listening >= settings.live_max_listeners:
            return error_response(503, "Too many live streams on this server; try again shortly", {"Retry-After": "10"})
        self.per_address[address] = held + 1
        self.listening += 1
        LISTENERS.inc()
        board.listeners.add(mailbox)
        if board.event is not None:
            mailbox.put(board.event)
        return None

    def leave(self, board: Board, mailbox: Mailbox, address: str) -> None:
        board.listeners.discard(mailbox)
        self.listening -= 1
        LISTENERS.dec()
        held = self.per_address.pop(address) - 1
        if held:
            self.per_address[address] = held


class LiveResponse(EventSourceResponse):
    """One listener's event stream: admitted against the caps as it starts, released however it ends.

    sse-starlette gives the headers and the answer to HEAD; the stream itself is a loop of our own.
    sse-starlette's runs four tasks, a task group and a cancel scope around each send for every
    stream: some 280 objects a listener, which each full garbage collection walked, and about half
    the gateway's CPU in a fan-out (docs/benchmarks.md). Here a listener is its request's task plus
    one that waits for the client to leave; heartbeats come from one task for the process
    (LiveTops.beat), the end on SIGTERM from the server (LiveTops.end_all). No send times out: a
    client that stops reading holds its one event, its socket's buffers and a place within the
    caps, until its connection goes.
    """

    def __init__(self, live: LiveTops, board: Board, address: str) -> None:
        self.live = live
        self.board = board
        self.address = address
        super().__init__(iter(()), sep=SEP)  # no body iterator: __call__ streams the mailbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(HEAD_AS_GET):  # the headers alone, as sse-starlette answers HEAD: no stream is opened
            await super().__call__({**scope, "method": "HEAD"}, receive, send)
            return
        mailbox = Mailbox()
        refusal = self.live.join(self.board, mailbox, self.address)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        watcher = asyncio.get_running_loop().create_task(mailbox.close_on_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            while (event := await mailbox.next()) is not None:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self.live.leave(self.board, mailbox, self.address)


EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "Event `top` (the list shape, with ranks) at once and at each change; comment heartbeats",
          "content": {"text/event-stream": {}}},
}  # fmt: skip


async def live_top(call: Call) -> Response:
    """The board's top 10 as server-sent events, at once and at every change; public, as a board is."""
    state, key = call.state, call.params["key"]
    check_board(state.settings, key)
    live: LiveTops = state.live
    return LiveResponse(live, live.boards[key], client_address(call.scope))


ROUTES = [
    Route("GET", "/api/leaderboard/{key}/live", live_top, "live_top", tags=("leaderboard",),
          response_class=EventSourceResponse, responses={**EVENT_STREAM, **ERRORS}),
]  # fmt: skip
