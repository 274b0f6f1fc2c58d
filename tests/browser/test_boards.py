"""The Leaderboards screen: your rank and neighbours (GET .../me), pages, and the season with its end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from devtools.stack import Stack
from tests.browser.conftest import Game, Snapshot
from tests.conftest import ARTIFACTS, Player, fresh_redis, started

BOARD = "leaderboards:survivor-Badlands"


def row(entry: dict[str, Any], own_id: str) -> dict[str, Any]:
    """An entry of the server's list shape as the game's panels show it."""
    name, _, owner = entry["value"].partition("-")
    return {"rank": entry["rank"], "name": name, "score": round(entry["score"]), "own": owner == own_id}


def fill(base_url: str, players: int) -> None:
    for score in range(players):
        player = Player(base_url)
        body = {"key": BOARD, "score": 1_000_000 + score * 10, "member": f"Rival{score}-{player.id}"}
        assert player.http.post("/api/leaderboard", json=body).status_code == 200


def post_own_score(game: Game, name: str, score: int) -> None:
    """A score posted from the game's own tab, with its session cookie."""
    status = game.page.evaluate(
        """([key, member, score]) => fetch('/api/leaderboard', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({key, member, score})}).then((answer) => answer.status)""",
        [BOARD, f"{name}-{game.wait_for('a session', lambda snap: bool(snap['sessionId']))['sessionId']}", score],
    )
    assert status == 200


def open_board(game: Game) -> Snapshot:
    """From the quest: the main menu, Leaderboards, and Left to Badlands (the maps wrap around)."""
    game.pause()
    game.choose("Main menu")
    game.wait_for_scene("menu")
    game.choose("Leaderboards")
    game.wait_for("the Grassland board", lambda snap: (snap["leaderboard"] or {}).get("map") == "Grassland")
    return game.press_until(
        "ArrowLeft",
        "the Badlands board",
        lambda snap: (snap["leaderboard"] or {}).get("map") == "Badlands" and "season" in snap["leaderboard"],
        lambda snap: (snap["leaderboard"] or {}).get("map") == "Grassland",
    )


def test_the_board_shows_your_rank_and_neighbours_and_pages(game: Game, stack: Stack) -> None:
    fill(stack.url, 14)  # at least 14 players above
    session_id = game.start_new_game("Pager")
    post_own_score(game, "Pager", 1_000_005)  # among the rivals, not at the top
    board = open_board(game)["leaderboard"]
    game.screenshot("board-around-me")

    mine = game.page.evaluate(f"fetch('/api/leaderboard/{BOARD}/me?around=2').then((answer) => answer.json())")
    assert board["ownRank"] == mine["rank"] > 1
    assert board["around"] == [row(entry, session_id) for entry in mine["around"]]
    assert [entry["own"] for entry in board["around"]].count(True) == 1
    first_page = httpx.get(f"{stack.url}/api/leaderboard/{BOARD}?count=10").json()
    assert board["offset"] == 0 and board["entries"] == [row(entry, session_id) for entry in first_page]
    assert board["season"]["mode"] == "none" and board["season"]["line"] == "All-time board"

    def on_page(offset: int) -> Any:
        return lambda snap: (snap["leaderboard"] or {}).get("offset") == offset and "season" in snap["leaderboard"]

    second = game.press_until("ArrowDown", "the second page", on_page(10), on_page(0))["leaderboard"]
    game.screenshot("board-second-page")
    second_page = httpx.get(f"{stack.url}/api/leaderboard/{BOARD}?count=10&offset=10").json()
    assert second["entries"] == [row(entry, session_id) for entry in second_page]
    assert second["entries"][0]["rank"] == 11
    back = game.press_until("ArrowUp", "the first page again", on_page(0), on_page(10))["leaderboard"]
    assert back["entries"][0]["rank"] == 1


@pytest.fixture(scope="module")
def daily_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        fresh_redis(tmp_path_factory.mktemp("daily")) as url,
        started(url, ARTIFACTS / "logs/browser-daily.log", LEADERBOARD_SEASON="daily") as running,
    ):
        yield running


def test_the_board_shows_the_season_and_when_it_ends(browser: Browser, daily_stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 960, "height": 540})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        game = Game(page, daily_stack.url, "season")
        game.start_new_game("Seasoned")
        post_own_score(game, "Seasoned", 42)
        board = open_board(game)["leaderboard"]
        game.screenshot("board-season")
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert board["season"]["mode"] == "daily" and board["season"]["current"] == today
        assert board["season"]["line"].startswith(f"Season {today}, ends in ")
        assert board["ownRank"] == 1 and board["entries"][0]["score"] == 42 and board["entries"][0]["own"]
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000
        assert board["season"]["endsAt"] == midnight + 86_400_000
    finally:
        context.close()
    assert not errors, errors
