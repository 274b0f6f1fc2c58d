"""Request bodies. Saves are free-form JSON objects; `id` has a shape the contract fixes, and a
player's `name`, which the search index holds, one of ours."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
MEMBER_MAX_LENGTH = 200
NAME_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
# A player's `name` is one short search token: a name of thousands of words cost Redis 15-31 ms to
# index per save. The rule of a leaderboard member's name; the game sends 1-12 letters and digits.
PLAYER_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


class SaveDocument(BaseModel):
    """Any JSON object whose `id` is the caller's session id."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    id: str = Field(pattern=ID_PATTERN, description="The caller's session id")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump()


def _with_name(schema: dict[str, Any]) -> None:
    """Documents `name` without declaring it, so the document keeps its keys in the order sent."""
    schema["additionalProperties"] = True
    schema["properties"]["name"] = {
        "type": "string",
        "pattern": PLAYER_NAME.pattern,
        "description": "Optional; 1 to 32 letters, digits or underscores (it is indexed for search)",
    }


class PlayerDocument(SaveDocument):
    """A player's save: any JSON object whose `id` is the caller's session id."""

    model_config = ConfigDict(json_schema_extra=_with_name)


class PlayerStateBody(BaseModel):
    playerData: PlayerDocument


class GameStateBody(BaseModel):
    gameData: SaveDocument


class ScoreBody(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    key: str = Field(examples=["leaderboards:survivor-Grassland"])
    score: float = Field(examples=[1200])
    member: str = Field(
        max_length=MEMBER_MAX_LENGTH, examples=["Hero-<session id>"], description="`{name}-{session id}`"
    )


class Message(BaseModel):
    status: int
    message: str


class SearchHit(BaseModel):
    id: str
    value: dict[str, Any]


class SearchResult(BaseModel):
    total: int
    documents: list[SearchHit]


class LeaderboardEntry(BaseModel):
    value: str
    score: float


class Session(BaseModel):
    id: str


def count_values(value: Any, max_depth: int) -> int | None:
    """The JSON values in `value`, itself included; None when it nests more than `max_depth` levels.

    Level by level, so a hostile body can't exhaust the stack; counting adds one len() per container
    to the walk that finds the containers.
    """
    level = [value] if isinstance(value, dict | list) else []
    count = 1
    for _ in range(max_depth):
        count += sum(map(len, level))
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))  # a tuple: faster than `dict | list` on the hot path
        ]
        if not level:
            return count
    return None
