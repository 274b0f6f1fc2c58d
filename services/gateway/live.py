"""`GET /api/leaderboard/{key}/live`: a board's top 10 as server-sent events, from one Redis read per process.

The leaderboard workers announce each change of a board's top on the board's live stream
(keys.live_top; services/leaderboard/live.py). Each gateway process follows those streams with one
task, started in the app's lifespan: it reads every board's top and its stream's last id together,
then waits on all the streams in one `XREAD BLOCK` (on a Redis Cluster the streams live in different
slots: one read per board), keeps each board's newest top as a ready-made event, and hands that one
object to every listener of the board. So a thousand listeners cost Redis what one does.

A listener holds only the newest event not yet sent to it (a mailbox of one): a slow client skips
to the newest top when it catches up, its memory never grows, and the others never wait for it. A
Redis that is away is retried with backoff while the listeners keep their streams and heartbeats;
once it is back, the tops are read again, so what changed meanwhile arrives as one event. Boards are public, so no
session is needed; the caps are per process: LIVE_MAX_PER_ADDRESS streams per address (429), and
LIVE_MAX_LISTENERS in all (503). On SIGTERM sse-starlette ends every stream within half a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.gateway.dependencies import ERRORS, Address
from services.gateway.leaderboard import as_number, check_board
from services.gateway.paths import HEAD_AS_GET
from services.gateway.responses import error_response
from services.gateway.store import Store
from shared import keys
from shared.connection import unavailable
from shared.protocol import LIVE_TOP_SIZE
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/leaderboard", tags=["leaderboard"])

LISTENERS = Gauge(
    "cachequest_live_listeners", "Live-top event streams open, over every gateway process", multiprocess_mode="livesum"
)
SEP = "\n"
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=SEP)
READ_WAIT_MS = 10_000  # how long one XREAD waits; it is issued again at once
FIRST_RETRY_S, LAST_RETRY_S = 0.1, 5.0  # the backoff while Redis is away


def top_event(rows: Sequence[tuple[str, float]]) -> bytes:
    """Event `top`: the list read's shape, each entry with its 1-based rank."""
    entries = [
        {"value": member, "score": as_number(score), "rank": rank} for rank, (member, score) in enumerate(rows, 1)
    ]
    return b"event: top\ndata: " + orjson.dumps(entries) + b"\n\n"


class Mailbox:
    """One listener's next event. Only the newest is kept: a listener that falls behind skips to it."""

    __slots__ = ("_event", "_ready")

    def __init__(self) -> None:
        self._event: bytes | None = None
        self._ready = asyncio.Event()

    def put(self, event: bytes) -> None:
        self._event = event
        self._ready.set()

    async def events(self) -> AsyncIterator[bytes]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            event, self._event = self._event, None
            if event is not None:
                yield event


@dataclass(eq=False)
class Board:
    """A board as this process follows it: its newest top, ready to send, and who listens."""

    key: str
    stream: str
    event: bytes | None = None  # None until the first read of the board
    last_id: bytes = b"0-0"  # of the last entry of the live stream seen
    listeners: set[Mailbox] = field(default_factory=set)

    def publish(self, rows: Sequence[tuple[str, float]]) -> None:
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
        self.reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self.follow_all(), name="live tops")

    async def aclose(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

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
    """One listener's event stream: admitted against the caps as it starts, released however it ends."""

    def __init__(self, live: LiveTops, board: Board, address: str) -> None:
        self.live = live
        self.board = board
        self.address = address
        self.mailbox = Mailbox()
        super().__init__(
            self.mailbox.events(),
            ping=live.settings.live_heartbeat_s,
            ping_message_factory=lambda: HEARTBEAT,
            sep=SEP,
        )

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        """sse-starlette's send, less the anyio cancel scope it enters around each one for its
        `send_timeout`: that scope was nearly half the gateway's CPU in a fan-out to 2,000 listeners
        (docs/benchmarks.md). So no send times out: a client that stops reading holds its one event,
        its socket's buffers and a place within the caps, until its connection goes."""
        try:
            await send(message)
        except BaseException:
            self._send_interrupted = True
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(HEAD_AS_GET):  # the headers alone, as sse-starlette answers HEAD: no stream is opened
            await super().__call__({**scope, "method": "HEAD"}, receive, send)
            return
        refusal = self.live.join(self.board, self.mailbox, self.address)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.live.leave(self.board, self.mailbox, self.address)


EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "Event `top` (the list shape, with ranks) at once and at each change; comment heartbeats",
          "content": {"text/event-stream": {}}},
}  # fmt: skip


@router.get("/{key}/live", response_class=EventSourceResponse, responses={**EVENT_STREAM, **ERRORS})
async def live_top(key: str, request: Request, address: Address) -> Response:
    """The board's top 10 as server-sent events, at once and at every change; public, as a board is."""
    check_board(request.app.state.settings, key)
    live: LiveTops = request.app.state.live
    return LiveResponse(live, live.boards[key], address)
