"""Player and game saves: one JSON.SET on the document root, conditional for updates.

`JSON.SET ... XX` makes "replace only if it exists" one atomic command, so the
PATCH-then-POST save flow has no check-then-write race and a redelivered
update is as harmless as the first. Each write restarts the save's SAVE_TTL_S
(the gateway restarts it too whenever it re-confirms the session).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson

from shared import keys
from shared.protocol import Event, EventType, PoisonEvent, Reply
from shared.settings import Settings
from shared.worker import Action, Handler

NOT_FOUND = Reply.message(404, "Not Found")


def save_handler(key_of: Callable[[str], str], noun: str, ttl_s: int, *, update: bool) -> Handler:
    done = Reply.message(200, f"{noun} {'updated' if update else 'created'}")

    def handle(event: Event) -> Action:
        document = event.payload
        if not isinstance(document, dict) or document.get("id") != event.session:
            raise PoisonEvent(f"{noun.lower()} document must be an object whose id is the caller's session id")
        body = orjson.dumps(document).decode()
        args = ("$", body, "XX") if update else ("$", body)
        key = key_of(event.session)
        return Action("JSON.SET", key, args, if_true=done, if_false=NOT_FOUND, expire_s=ttl_s, versioned=True)

    return handle


def handlers(settings: Settings) -> Mapping[EventType, Handler]:
    ttl = settings.save_ttl_s
    return {
        EventType.PLAYER_CREATE: save_handler(keys.player, "Player", ttl, update=False),
        EventType.PLAYER_UPDATE: save_handler(keys.player, "Player", ttl, update=True),
        EventType.GAME_CREATE: save_handler(keys.game, "Game", ttl, update=False),
        EventType.GAME_UPDATE: save_handler(keys.game, "Game", ttl, update=True),
    }
