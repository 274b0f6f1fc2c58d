"""Request bodies. Saves are free-form JSON objects; `id` has a shape the contract fixes, and a
player's `name`, which the search index holds, one of ours."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
MEMBER_MAX_LENGTH = 200
RUN_MAX_LENGTH = 100  # a token is its map's name, a dot and 32 hex digits
# A player's name, wherever one appears (a board member's `{name}-`, a search term): the game
# reads this rule from GET /api/config rather than keeping a copy.
NAME_MAX_LENGTH = 32
NAME_PATTERN = rf"^[A-Za-z0-9_]{{1,{NAME_MAX_LENGTH}}}$"
NAME_RULE = f"1 to {NAME_MAX_LENGTH} letters, digits or underscores"
# A player's `name` is one short search token: a name of thousands of words cost Redis milliseconds
# to index on every save (docs/benchmarks.md).
PLAYER_NAME = re.compile(NAME_PATTERN)


class SaveDocument(BaseModel):
    """Any JSON object whose `id` is the caller's session id."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    id: str = Field(pattern=ID_PATTERN, description="The caller's session id")

    def as_json(self) -> dict[str, Any]:
        """What model_dump() gives (the fields, then the extra keys as sent), without walking the
        extra values again: they are the JSON the body held, and the walk was a visible share of a
        save's CPU (docs/benchmarks.md)."""
        return {"id": self.id, **(self.model_extra or {})}


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
    # Strict: a JSON number only, never `"12"` or `true` (the hot path refuses those too).
    score: float = Field(strict=True, examples=[1200])
    member: str = Field(
        max_length=MEMBER_MAX_LENGTH, examples=["Hero-<session id>"], description="`{name}-{session id}`"
    )
    run: str | None = Field(
        None, max_length=RUN_MAX_LENGTH, description="A verified run's token (POST /api/leaderboard/{key}/runs)"
    )


class Run(BaseModel):
    run: str = Field(description="The run's token: send it with the run's score")
    startedAt: int = Field(description="When the run started, epoch milliseconds on the server's clock")


class RunBoundsInfo(BaseModel):
    minS: float = Field(description="A run shorter than this is refused")
    maxS: int = Field(description="A run expires this long after it started")
    scorePerS: float
    scoreBase: float = Field(description="A run may score at most scorePerS * seconds + scoreBase")


class RunsInfo(BaseModel):
    verified: list[str] = Field(description="Maps whose board takes a score only with a run")
    bounds: dict[str, RunBoundsInfo] = Field(description="Each map's run bounds")


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
    rank: int = Field(description="1-based, highest score first")


class AroundMe(BaseModel):
    rank: int
    score: float
    value: str = Field(description="Your member, under the name you last posted")
    around: list[LeaderboardEntry]


class AccountEntry(BaseModel):
    key: str = Field(description="The sorted set the entry is in")
    season: str | None = Field(description="Its season's label; null for all-time and boards without seasons")
    value: str
    score: float
    rank: int


class Saves(BaseModel):
    player: dict[str, Any] | None
    game: dict[str, Any] | None


class RecoveryState(BaseModel):
    active: bool


class Account(BaseModel):
    id: str
    saves: Saves
    leaderboards: list[AccountEntry]
    recovery: RecoveryState


class Seasons(BaseModel):
    current: str
    seasons: list[str] = Field(description="Labels of the seasons with scores still kept, newest first")


class SeasonInfo(BaseModel):
    mode: str = Field(description="LEADERBOARD_SEASON: none, daily, weekly or monthly")
    current: str | None = Field(description="The current season's label; null without seasons")
    endsAt: int | None = Field(description="When the current season ends, epoch milliseconds (UTC)")


class Session(BaseModel):
    id: str


class NameRule(BaseModel):
    pattern: str
    maxLength: int
    description: str


class GameConfig(BaseModel):
    maps: list[str]
    leaderboards: dict[str, str]  # map to its board's key
    name: NameRule
    scoreMin: float
    scoreMax: float
    season: SeasonInfo
    runs: RunsInfo


def surely_within(text: bytes, max_depth: int, max_values: int) -> bool:
    """True when the JSON text cannot nest deeper than `max_depth` nor hold more than `max_values`
    values, from bounds counted at C speed; False means only that count_values must tell.

    Structural characters are never escaped, and the same characters inside strings only raise the
    counts: a container opens with `[` or `{`, and a value is the root or follows `[`, `,` or `:`.
    So a value takes a byte and, but the root, one more before it: a text of fewer than
    2 * max_values bytes holds fewer values than that, uncounted. A usual save passes at a fraction
    of the cost of count_values' walk (docs/benchmarks.md). A body's bounds
    hold for any document inside it.
    """
    opens = text.count(b"[")
    if opens + text.count(b"{") > max_depth:
        return False
    return len(text) < 2 * max_values or 1 + opens + text.count(b",") + text.count(b":") <= max_values


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
