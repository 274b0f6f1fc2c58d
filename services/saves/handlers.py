"""Player and game saves: one JSON.SET on the document root, conditional for updates; merges and deletes.

`JSON.SET ... XX` makes "replace only if it exists" one atomic command, so the
PATCH-then-POST save flow has no check-then-write race and a redelivered
update is as harmless as the first. Each write restarts the save's SAVE_TTL_S
(the gateway restarts it too whenever it re-confirms the session). A caller's
precondition (If-Match, If-None-Match) travels in the envelope and is checked
in the write's own atomic step (shared/apply_commands.lua).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import orjson

from shared import keys
from shared.protocol import ANY_VERSION, Event, EventType, Outcome, PoisonEvent, Reply
from shared.settings import Settings
from shared.worker import Action, Handler, Limits

NOT_FOUND = Reply.message(404, "Not Found")
CHANGED = Reply.message(412, "The save is not the version you named (If-Match / If-None-Match): read it again")
IF_CHANGED = {Outcome.PRECONDITION_FAILED: CHANGED}


def if_changed(event: Event) -> Mapping[Outcome, Reply]:
    """The 412 of a write with a precondition; a write without one has none to answer."""
    return IF_CHANGED if event.expect else {}


def document_of(event: Event, noun: str) -> str:
    document = event.payload
    if not isinstance(document, dict) or document.get("id") != event.session:
        raise PoisonEvent(f"{noun.lower()} document must be an object whose id is the caller's session id")
    return orjson.dumps(document).decode()


def save_handler(key_of: Callable[[str], str], noun: str, ttl_s: int, *, update: bool) -> Handler:
    done = Reply.message(200, f"{noun} {'updated' if update else 'created'}")

    def handle(event: Event) -> Action:
        body = document_of(event, noun)
        args = ("$", body, "XX") if update else ("$", body)
        return Action(
            "JSON.SET", key_of(event.session), args, if_true=done, if_false=NOT_FOUND, expire_s=ttl_s,
            versioned=True, expect=event.expect, refusals=if_changed(event),
        )  # fmt: skip

    return handle


def merge_handler(key_of: Callable[[str], str], noun: str, ttl_s: int, limits: Limits) -> Handler:
    """RFC 7396 with JSON.MERGE, only onto an existing document (JSON.MERGE alone would create one).

    The merged document's size depends on the stored one, so its limits are checked in the same
    atomic step, which restores the document when they are broken.
    """
    done = Reply.message(200, f"{noun} updated")
    over = Reply.message(
        413,
        f"The merged {noun.lower()} save would be over the limits: {limits.max_bytes} bytes, "
        f"{limits.max_values} JSON values, {limits.max_depth} levels; nothing was changed",
    )

    def handle(event: Event) -> Action:
        body = document_of(event, noun)
        # Without a precondition of the caller's, "it exists" is ours, and a missing save is a 404.
        missing = CHANGED if event.expect else NOT_FOUND
        return Action(
            "JSON.MERGE", key_of(event.session), ("$", body), if_true=done, if_false=NOT_FOUND, expire_s=ttl_s,
            versioned=True, expect=event.expect or ANY_VERSION, limits=limits,
            refusals={Outcome.PRECONDITION_FAILED: missing, Outcome.OVER_LIMITS: over},
        )  # fmt: skip

    return handle


def delete_handler(key_of: Callable[[str], str], noun: str, keep_version_s: int) -> Handler:
    """DEL, and the version kept `keep_version_s`: an older command redelivered meanwhile (a create
    still within its deadline) finds a newer version and cannot bring the save back."""
    done = Reply.message(200, f"{noun} deleted")

    def handle(event: Event) -> Action:
        return Action(
            "DEL", key_of(event.session), (), if_true=done, if_false=NOT_FOUND, expire_s=keep_version_s,
            versioned=True, expect=event.expect, refusals=if_changed(event),
        )  # fmt: skip

    return handle


def handlers(settings: Settings) -> Mapping[EventType, Handler]:
    ttl = settings.save_ttl_s
    limits = Limits(settings.max_body_bytes, settings.max_json_values, settings.max_json_depth)
    # Past the stream's retention every older command is trimmed, and long past its deadline.
    keep_version_s = math.ceil(settings.stream_retention_ms / 1000)
    return {
        EventType.PLAYER_CREATE: save_handler(keys.player, "Player", ttl, update=False),
        EventType.PLAYER_UPDATE: save_handler(keys.player, "Player", ttl, update=True),
        EventType.PLAYER_MERGE: merge_handler(keys.player, "Player", ttl, limits),
        EventType.PLAYER_DELETE: delete_handler(keys.player, "Player", keep_version_s),
        EventType.GAME_CREATE: save_handler(keys.game, "Game", ttl, update=False),
        EventType.GAME_UPDATE: save_handler(keys.game, "Game", ttl, update=True),
        EventType.GAME_MERGE: merge_handler(keys.game, "Game", ttl, limits),
        EventType.GAME_DELETE: delete_handler(keys.game, "Game", keep_version_s),
    }
