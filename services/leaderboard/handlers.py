"""Score submissions: `ZADD key GT CH`, so only a personal best moves the board.

The gateway has already checked the caller; the checks are repeated here
because a stream entry is only as trustworthy as whoever could write it.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared import keys
from shared.protocol import Event, EventType, PoisonEvent, Reply, is_finite_number
from shared.settings import Settings
from shared.worker import Action, Handler

RECORDED = Reply.message(200, "Score recorded")
NOT_HIGHER = Reply.message(200, "Score not higher than the current one; unchanged")


def submit_handler(settings: Settings) -> Handler:
    boards = {keys.leaderboard(name) for name in settings.leaderboard_maps}

    def handle(event: Event) -> Action:
        entry = event.payload
        if not isinstance(entry, dict) or entry.get("key") not in boards:
            raise PoisonEvent("score must name a configured leaderboard")
        member, score = entry.get("member"), entry.get("score")
        if not isinstance(member, str) or not member.endswith(f"-{event.session}"):
            raise PoisonEvent("member must end with the caller's session id")
        if not is_finite_number(score) or not settings.score_min <= score <= settings.score_max:
            raise PoisonEvent("score must be a finite number within the configured bounds")
        return Action("ZADD", entry["key"], ("GT", "CH", repr(score), member), if_true=RECORDED, if_false=NOT_HIGHER)

    return handle


def handlers(settings: Settings) -> Mapping[EventType, Handler]:
    return {EventType.SCORE_SUBMIT: submit_handler(settings)}
