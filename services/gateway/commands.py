"""Sending a command to a worker and waiting for its answer: the gateway's side of the protocol.

A command is first admitted: its caller's session must still exist in Redis, and its rate limits
(per session and per client address, counted in the partition it goes to) must allow it.
Admission and publication are one script (store.py, admit.lua), so a refused command is never
published. One session's commands all go to one partition (STREAM_PARTITIONS), so they stay in
order; everything admit.lua touches carries that partition's hash tag.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import HTTPException

from services.gateway.store import Command, RateLimit, Store
from shared import keys
from shared.logs import current_request_id
from shared.protocol import STREAM_OF, Event, EventType, Reply, partition_of, trim_id
from shared.settings import Settings, parse_rate

log = logging.getLogger(__name__)

# A reply written right at the deadline should still reach the caller.
REPLY_GRACE_MS = 250
SESSION_GONE = "Your session has expired: call GET /session for a new one"


class CommandBus:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.session_writes = parse_rate(settings.rate_limit_session_writes)
        self.address_writes = parse_rate(settings.rate_limit_address_writes)

    async def call(
        self,
        type: EventType,
        session_id: str,
        address: str,
        payload: Any,
        expect: str = "",
        *,
        live: bool = True,
        counted_as: str = "writes",
    ) -> Reply:
        """Admit the command and publish it, then wait for its reply; its `version` is the command's
        stream entry id, which a save's command writes as the document's version. `live`: only while
        the session is (an erase is not: repeated, or an operator's, it finds the session gone).
        `counted_as`: the rate limits' count, per session and per address (an erase has its own, so a
        player whose writes are at their limit can still erase).

        A 504 means no worker answered in time; the command is never applied after its deadline,
        and every command is idempotent, so the client can simply retry.
        """
        partition = self.partition(session_id)
        limits = [
            *RateLimit.on(self.session_writes, keys.write_limit(partition, f"session-{counted_as}", session_id)),
            *RateLimit.on(self.address_writes, keys.write_limit(partition, f"address-{counted_as}", address)),
        ]
        session = keys.session(session_id) if live else None
        return await self._call(type, session_id, partition, payload, expect, limits, session)

    async def operator_call(self, type: EventType, player_id: str, payload: Any) -> Reply:
        """An operator's command about a player (services/gateway/admin.py): on the player's partition,
        in order with the player's own commands, admitted with no session and no player's rate limit."""
        return await self._call(type, player_id, self.partition(player_id), payload, "", [], None)

    def partition(self, player_id: str) -> int:
        return partition_of(player_id, self.settings.stream_partitions)

    async def banned(self, player_id: str) -> bool:
        """Whether an operator banned the player from the leaderboards (services/leaderboard/handlers.py)."""
        return await self.store.is_member(keys.bans(self.partition(player_id)), player_id)

    async def _call(
        self,
        type: EventType,
        session_id: str,
        partition: int,
        payload: Any,
        expect: str,
        limits: list[RateLimit],
        session: str | None,
    ) -> Reply:
        request_id = current_request_id.get() or ""
        timeout_ms = self.settings.request_timeout_ms
        event = Event.new(type, session_id, payload, timeout_ms, partition, request_id, expect)
        stream = STREAM_OF[type]
        entry_id = await self.admit_and_publish(event, stream.key(partition), limits, session)
        reply = await self.store.wait_for_reply(event.reply_to, self.settings.request_timeout_ms + REPLY_GRACE_MS)
        # The line that joins the HTTP request (its request id) to its event, and so to the worker's lines.
        if reply is None:
            log.warning("%s %s: no reply within %d ms", type, event.id, self.settings.request_timeout_ms)
        else:
            log.debug("%s %s: %d", type, event.id, reply.status)
        if reply is None:
            raise HTTPException(
                504,
                f"The {stream.group} service did not answer in time; it will not apply it late: retrying is safe",
                headers={"Retry-After": "1"},
            )
        if reply.status == 503:  # Redis was full: the worker applied nothing (shared/worker.py)
            raise HTTPException(503, str(reply.body["message"]), headers={"Retry-After": "1"})
        return Reply(reply.status, reply.body, entry_id)

    async def admit_and_publish(self, event: Event, stream: str, limits: list[RateLimit], session: str | None) -> str:
        """Publish the command if its session is live (else 401) and its write limits allow it (else 429);
        its stream entry id."""
        command = Command(stream, trim_id(self.settings.stream_retention_ms), event.encode())
        admitted = await self.store.admit_and_publish(limits, command, session)
        if admitted is None:
            raise HTTPException(401, SESSION_GONE)
        if isinstance(admitted, int):
            raise HTTPException(
                429, "Too many writes; slow down", headers={"Retry-After": str(math.ceil(admitted / 1000))}
            )
        return admitted
