"""Every Redis key, index and consumer group the project uses, and nothing else names one.

The data keys and indexes are fixed by the HTTP contract (API.md); the stream
keys are the services' own and all live under `stream:`.
"""

from __future__ import annotations

SESSION_PREFIX = "sessions:"
RATE_LIMIT_PREFIX = "ratelimit:"
PLAYER_PREFIX = "players:"
GAME_PREFIX = "games:"
LEADERBOARD_PREFIX = "leaderboards:survivor-"

PLAYER_INDEX = "player-idx"
GAME_INDEX = "game-idx"

# FT.CREATE arguments after the index name, exactly as API.md gives them.
INDEX_DEFINITIONS: dict[str, tuple[str, ...]] = {
    PLAYER_INDEX: (
        "ON", "JSON", "PREFIX", "1", PLAYER_PREFIX,
        "SCHEMA", "$.id", "AS", "id", "TEXT", "$.name", "AS", "name", "TEXT",
    ),
    GAME_INDEX: (
        "ON", "JSON", "PREFIX", "1", GAME_PREFIX,
        "SCHEMA", "$.id", "AS", "id", "TEXT",
    ),
}  # fmt: skip

SAVES_STREAM = "stream:saves"
SCORES_STREAM = "stream:scores"
DEAD_LETTER_STREAM = "stream:dead-letter"
REPLY_PREFIX = "stream:reply:"

SAVES_GROUP = "saves"
LEADERBOARD_GROUP = "leaderboard"


def session(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def rate_limit(rule: str, who: str) -> str:
    return f"{RATE_LIMIT_PREFIX}{rule}:{who}"


def player(player_id: str) -> str:
    return PLAYER_PREFIX + player_id


def game(game_id: str) -> str:
    return GAME_PREFIX + game_id


def leaderboard(map_name: str) -> str:
    return LEADERBOARD_PREFIX + map_name


def reply(event_id: str) -> str:
    return REPLY_PREFIX + event_id
