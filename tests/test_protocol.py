"""The registry of command types (shared/protocol.py): each on one stream, each handled by that stream's worker."""

from __future__ import annotations

import secrets

import pytest

from services.leaderboard.handlers import handlers as leaderboard_handlers
from services.saves.handlers import handlers as saves_handlers
from shared.protocol import COMMAND_STREAMS, SAVES, SCORES, STREAM_OF, EventType
from shared.settings import Settings
from shared.worker import Worker

SETTINGS = Settings(session_secret=secrets.token_hex(24))


def test_every_command_type_is_on_one_stream_and_handled_by_its_worker() -> None:
    for event_type in EventType:
        assert [stream for stream in COMMAND_STREAMS if event_type in stream.events] == [STREAM_OF[event_type]]
    assert saves_handlers(SETTINGS).keys() == SAVES.events
    assert leaderboard_handlers(SETTINGS).keys() == SCORES.events


@pytest.mark.parametrize("missing", sorted(SAVES.events))
def test_a_worker_without_a_handler_for_one_of_its_types_does_not_start(missing: EventType) -> None:
    handlers = {
        event_type: handler for event_type, handler in saves_handlers(SETTINGS).items() if event_type != missing
    }
    with pytest.raises(ValueError, match=missing.value):
        Worker(SAVES, handlers, SETTINGS)


def test_a_worker_handed_another_streams_type_does_not_start() -> None:
    handlers = {**saves_handlers(SETTINGS), **leaderboard_handlers(SETTINGS)}
    with pytest.raises(ValueError, match=EventType.SCORE_SUBMIT.value):
        Worker(SAVES, handlers, SETTINGS)
