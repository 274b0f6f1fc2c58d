"""The operators' console: the admin API under /admin/api, and its web page at /admin (web/admin/).

Served only when ADMIN_TOKENS names an operator; otherwise no route is here and every /admin path is
a JSON 404 (app.py's GameFiles). An API request carries `Authorization: Bearer <token>`, compared with every
configured token in constant time; the name of the one it matches is who the audit records. Nothing
here reads a cookie (the session layer serves only /api/ and /session), so a player's session never
opens these routes, and another site cannot make a browser call them: a bearer header, unlike a
cookie, is never sent on its own (no CSRF). Wrong or missing tokens count against the caller's
address (RATE_LIMIT_ADMIN_FAILURES, then 429); a right token is never refused by that count, so no
one can lock the operators out by failing on purpose.

Writes go through the streams as every write does (CommandBus.operator_call; the leaderboard worker
applies them), and dead letters are replayed and dropped by services/deadletters.py, as `make
deadletters` does. Every write is recorded in the audit with its answer, whatever that was. Every
route's guard is `operator`, run before anything of the request is validated.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable
from pathlib import Path as FilePath
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from services import deadletters
from services.deadletters import Letter, Refused, clock
from services.gateway.account import erase_account, export_account
from services.gateway.commands import CommandBus
from services.gateway.layers import Call, header
from services.gateway.models import ID_PATTERN, MEMBER_MAX_LENGTH
from services.gateway.routing import Handler, Route
from services.gateway.saves import search_query
from services.gateway.sessions import client_address, refuse_if_limited
from services.gateway.store import RateLimit, Store
from services.leaderboard.handlers import every_board, is_board
from shared import keys
from shared.connection import unavailable
from shared.logs import current_request_id
from shared.protocol import COMMAND_STREAMS, EventType, Reply, now_ms, owner_of, partition_of, scores_of
from shared.settings import Settings, parse_rate

CONSOLE = FilePath(__file__).resolve().parents[2] / "web" / "admin"
CONSOLE_FILES = {"admin.js": "text/javascript", "admin.css": "text/css"}
# The page runs only its own script and style, talks only to its own origin, and is framed by no one.
CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NO_STORE = {"Cache-Control": "no-store"}
UNAUTHORIZED = "An operator's token is required: Authorization: Bearer <token>"
LETTER_ID = r"^[0-9]{1,20}-[0-9]{1,20}$"
MAX_LIST = 500

TAGS = ("operators",)


def token_digests(settings: Settings) -> list[tuple[str, bytes]]:
    return [(name, hashlib.sha256(token.encode()).digest()) for name, token in settings.admin_tokens]


def operator_of(digests: list[tuple[str, bytes]], authorization: str | None) -> str | None:
    """The name of the operator whose token the header carries, or None. Every configured token is
    compared, each in constant time over digests of one length, so neither which one matched nor
    how much of one did shows in the time taken."""
    scheme, _, offered = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    digest = hashlib.sha256(offered.strip().encode("latin-1")).digest()
    found = None
    for name, wanted in digests:
        if hmac.compare_digest(wanted, digest):
            found = name
    return found


async def operator(call: Call) -> None:
    """The guard of every admin route: the operator the request's token names goes in `call.operator`;
    401 without one (429 once the address failed too often)."""
    state = call.state
    authorization = header(call.scope, b"authorization")
    name = operator_of(state.admin_tokens, None if authorization is None else authorization.decode("latin-1"))
    if name is not None:
        call.operator = name
        return
    settings: Settings = state.settings
    address = client_address(call.scope)
    limit = RateLimit.on(parse_rate(settings.rate_limit_admin_failures), keys.rate_limit("admin-failures", address))
    await refuse_if_limited(state.store, limit, "Too many failed attempts; slow down")
    raise HTTPException(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})


def answer(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, NO_STORE, "application/json")


def reply_answer(reply: Reply) -> Response:
    return answer(reply.status, reply.body)


async def audited(call: Call, action: str, target: str, work: Awaitable[Response]) -> Response:
    """Do an admin write and record it (who, what, on what, the answer's status), whatever came of it."""
    status = 500
    try:
        response = await work
        status = response.status_code
        return response
    except HTTPException as error:
        status = error.status_code
        raise
    except Exception as error:  # answered by responses.response_for: a 503 when Redis is the cause
        status = 503 if unavailable(error) else 500
        raise
    finally:
        record = {"operator": call.operator, "action": action, "target": target, "status": str(status)}
        store: Store = call.state.store
        await store.audit(
            {**record, "request_id": current_request_id.get() or ""}, call.state.settings.admin_audit_kept
        )


# The console's page


async def console(_call: Call) -> Response:
    return FileResponse(CONSOLE / "index.html", headers=CONSOLE_HEADERS, media_type="text/html")


async def console_file(call: Call) -> Response:
    name = call.params["name"]
    media_type = CONSOLE_FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"No console file {name[:80]!r}")
    return FileResponse(CONSOLE / name, headers=CONSOLE_HEADERS, media_type=media_type)


# Players


class PlayerQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str | None = Field(None, max_length=64)
    id: str | None = Field(None, max_length=64)


async def find_players(call: Call) -> Response:
    """Search `player-idx` by name and id: the whole documents."""
    store: Store = call.state.store
    query = search_query(id=call.query.id, name=call.query.name)
    total, hits = await store.search(keys.PLAYER_INDEX, query, call.state.settings.search_limit)
    return answer(200, {"total": total, "documents": [{"id": key, "value": orjson.loads(raw)} for key, raw in hits]})


async def player(call: Call) -> Response:
    """Everything held about a player (as GET /api/account), whether banned, and the entries kept aside."""
    return answer(200, await player_record(call.state.store, call.state.settings, call.params["player_id"]))


async def erase(call: Call) -> Response:
    """Erase everything held about the player, as DELETE /api/account does for the player."""
    player_id = call.params["player_id"]
    return await audited(call, "erase", player_id, erased(call.state.bus, player_id, client_address(call.scope)))


async def erased(bus: CommandBus, player_id: str, address: str) -> Response:
    return reply_answer(await erase_account(bus, player_id, address))


async def ban(call: Call) -> Response:
    """Take the player's entries off every board, kept aside, and refuse their scores; saves go on."""
    player_id = call.params["player_id"]
    return await audited(call, "ban", player_id, moderate(call.state.bus, EventType.BOARD_BAN, player_id))


async def unban(call: Call) -> Response:
    """Put the entries kept aside back, and take the player's scores again."""
    player_id = call.params["player_id"]
    return await audited(call, "unban", player_id, moderate(call.state.bus, EventType.BOARD_UNBAN, player_id))


async def moderate(bus: CommandBus, type: EventType, player_id: str) -> Response:
    return reply_answer(await bus.operator_call(type, player_id, {}))


# Boards


async def remove_entry(call: Call) -> Response:
    """Remove one entry from one board (a current board, all-time, or a season's archive)."""
    key, member = call.params["key"], call.params["member"]
    if len(member) > MEMBER_MAX_LENGTH:  # as pydantic words it
        raise HTTPException(400, f"path.member: String should have at most {MEMBER_MAX_LENGTH} characters")
    return await audited(call, "remove-entry", f"{key[:200]} {member}", remove(call.state.bus, key, member))


async def remove(bus: CommandBus, key: str, member: str) -> Response:
    if not is_board(bus.settings, key):
        raise HTTPException(400, f"Unknown leaderboard {key[:80]!r}")
    owner = owner_of(member)[1]
    return reply_answer(await bus.operator_call(EventType.BOARD_REMOVE, owner, {"key": key, "member": member}))


# Streams and dead letters


class StreamsQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    count: int = Field(50, ge=1, le=MAX_LIST)


async def streams(call: Call) -> Response:
    """Each command stream's length and groups (pending, lag), and the newest dead letters."""
    return answer(200, await streams_view(call.state.store, call.state.settings, call.query.count))


class ReplayQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    force: bool = False


async def replay_letter(call: Call) -> Response:
    """Publish the letter's command again and remove it once its worker answers 2xx (make deadletters' rules)."""
    letter_id, force = call.params["letter_id"], call.query.force
    work = replay(call.state.store, call.state.settings, letter_id, force)
    return await audited(call, "replay-dead-letter-forced" if force else "replay-dead-letter", letter_id, work)


async def drop_letter(call: Call) -> Response:
    """Delete one dead letter."""
    letter_id = call.params["letter_id"]
    return await audited(call, "drop-dead-letter", letter_id, drop(call.state.store, call.state.settings, letter_id))


async def replay(store: Store, settings: Settings, letter_id: str, force: bool) -> Response:
    steps: list[str] = []
    try:
        reply = await deadletters.replay(store, settings, letter_id, force=force, say=steps.append)
    except Refused as refusal:
        raise HTTPException(refusal.status, str(refusal)) from None
    return answer(
        200, {"status": 200, "message": f"Dead letter {letter_id} replayed", "steps": steps, "reply": reply.body}
    )


async def drop(store: Store, settings: Settings, letter_id: str) -> Response:
    try:
        letter = await deadletters.drop(store, settings, letter_id)
    except Refused as refusal:
        raise HTTPException(refusal.status, str(refusal)) from None
    return answer(200, {"status": 200, "message": f"Dead letter {letter.id} dropped"})


# The audit


class AuditQuery(BaseModel):
    model_config = ConfigDict(frozen=True)
    count: int = Field(100, ge=1, le=MAX_LIST)


async def audit(call: Call) -> Response:
    """The newest admin writes first: when, who, what, on what, and the status answered."""
    entries = await call.state.store.stream_newest(keys.ADMIN_AUDIT, call.query.count)
    rows = [
        {"id": entry_id.decode(), "at": clock(entry_id.decode()), **{k.decode(): v.decode() for k, v in fields.items()}}
        for entry_id, fields in entries
    ]
    return answer(200, rows)


def routes(settings: Settings) -> list[Route]:
    """The operators' routes, behind their token (`operator`); none without ADMIN_TOKENS."""
    if not settings.admin_tokens:
        return []
    player_id, letter_id = {"player_id": ID_PATTERN}, {"letter_id": LETTER_ID}
    documented = settings.admin_openapi

    def route(method: str, path: str, handler: Handler, **options: Any) -> Route:
        return Route(
            method, path, handler, handler.__name__, guard=operator, tags=TAGS, in_schema=documented, **options
        )

    return [
        Route("GET", "/admin", console, "console", in_schema=False),
        Route("GET", "/admin/{name}", console_file, "console_file", in_schema=False),
        route("GET", "/admin/api/players", find_players, query=PlayerQuery),
        route("GET", "/admin/api/players/{player_id}", player, patterns=player_id),
        route("DELETE", "/admin/api/players/{player_id}", erase, patterns=player_id),
        route("POST", "/admin/api/players/{player_id}/ban", ban, patterns=player_id),
        route("DELETE", "/admin/api/players/{player_id}/ban", unban, patterns=player_id),
        route("DELETE", "/admin/api/leaderboard/{key}/entries/{member}", remove_entry),
        route("GET", "/admin/api/streams", streams, query=StreamsQuery),
        route(
            "POST", "/admin/api/dead-letters/{letter_id}/replay", replay_letter, patterns=letter_id, query=ReplayQuery
        ),
        route("DELETE", "/admin/api/dead-letters/{letter_id}", drop_letter, patterns=letter_id),
        route("GET", "/admin/api/audit", audit, query=AuditQuery),
    ]


# What the routes read


async def player_record(store: Store, settings: Settings, player_id: str) -> dict[str, Any]:
    """What GET /api/account shows the player (account.py), and whether the player is banned, with the
    entries the ban keeps aside (on the boards a ban reaches)."""
    boards = every_board(settings, now_ms())
    record, aside, banned = await asyncio.gather(
        export_account(store, settings, player_id),
        asyncio.gather(*(store.field(keys.board_aside(key), player_id) for key, _ in boards)),
        store.is_member(keys.bans(partition_of(player_id, settings.stream_partitions)), player_id),
    )
    kept = [{"key": key, **kept_entry(found)} for (key, _), found in zip(boards, aside, strict=True) if found]
    return {**record, "banned": banned, "aside": kept}


def kept_entry(kept: bytes) -> dict[str, Any]:
    """An entry a ban keeps aside, as the aside hash holds it: `{score} {reached ms or -} {member}`."""
    score, _reached, member = kept.decode().split(" ", 2)
    return {"value": member, "score": scores_of([score])[0]}


async def streams_view(store: Store, settings: Settings, count: int) -> dict[str, Any]:
    partitions = range(settings.stream_partitions)
    streams = [(stream, stream.key(n)) for stream in COMMAND_STREAMS for n in partitions]
    infos, (letters, total) = await asyncio.gather(
        asyncio.gather(*(store.stream_groups(key) for _, key in streams)), deadletters.newest(store, settings, count)
    )
    verdicts = await asyncio.gather(*(deadletters.verdict(store, settings, letter) for letter in letters))
    return {
        "streams": [
            {
                "key": key,
                "length": length,
                "groups": [{"name": group.name, "pending": group.pending, "lag": group.lag} for group in groups],
            }
            for (_, key), (length, groups) in zip(streams, infos, strict=True)
        ],
        "deadLetters": {
            "total": total,
            "newest": [letter_view(letter, verdict) for letter, verdict in zip(letters, verdicts, strict=True)],
        },
    }


def letter_view(letter: Letter, verdict: str) -> dict[str, Any]:
    payload = letter.fields.get(b"payload")
    try:
        parsed = None if payload is None else orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    return {
        "id": letter.id,
        "at": clock(letter.id),
        "stream": letter.text(b"dead_stream"),
        "entry": letter.text(b"dead_entry"),
        "type": letter.text(b"type"),
        "session": letter.text(b"session"),
        "reason": letter.text(b"dead_reason"),
        "payload": parsed,
        "replay": verdict,
    }
