"""The game in a real browser against the whole stack: what a player does, checked in Redis."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from playwright.sync_api import Route

from tests.browser.conftest import CHROMIUM, SKIP_REASON, Game, Snapshot

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]

# Tile centres from web/public/src/world.js: the guide of every map, and a walkable clearing.
GUIDE = (752, 432)
CLEARING = (560, 400)


def document(store: redis.Redis, key: str) -> Any:
    return store.json().get(key)


def js_round(value: float) -> int:
    """JavaScript's Math.round (halves go up), which the game uses; Python's round() goes to even."""
    return math.floor(value + 0.5)


def wait_for_field(store: redis.Redis, key: str, path: str, expected: Any, timeout_s: float = 15) -> None:
    """Polls the JSON document at `key` until the value at the dotted `path` equals `expected`."""
    deadline = time.monotonic() + timeout_s
    seen: Any = None
    while time.monotonic() < deadline:
        seen = document(store, key)
        for part in path.split("."):
            seen = seen.get(part) if isinstance(seen, dict) else None
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{key} {path}: expected {expected!r}, still {seen!r} after {timeout_s}s")


def dialogue_is_not(shown: Snapshot) -> Callable[[Snapshot], bool]:
    return lambda snap: snap["dialogue"] != shown


def test_new_player_sees_the_title_and_new_game_creates_both_saves(game: Game, store: redis.Redis) -> None:
    game.open()
    time.sleep(1)  # a few frames of the animated title
    stats = game.picture_stats(game.page.locator("canvas").screenshot())
    game.screenshot("title")
    assert stats["colours"] > 50 and stats["stddev"] > 10, f"the title screen looks blank: {stats}"

    menu = game.leave_title()["menu"]
    game.screenshot("menu")
    assert "Continue" not in menu["options"], "a brand-new session has no save to continue"

    game.choose("New game")
    game.wait_for_scene("newgame")
    game.page.keyboard.type("Te-st 7!")  # only letters and digits are taken
    game.wait_for("the filtered name", lambda snap: snap["nameEntry"]["name"] == "Test7")
    game.screenshot("newgame")
    snap = game.start_game_named()
    game.screenshot("quest")

    session_id = game.session_id_from_server()
    assert snap["sessionId"] == session_id
    player = document(store, f"players:{session_id}")
    progress = document(store, f"games:{session_id}")
    assert player is not None and progress is not None, "New game must create players:{id} and games:{id}"
    assert player["id"] == session_id and player["name"] == "Test7"
    assert player["currentMap"] == "Grassland" and set(player["position"]) == {"x", "y"}
    assert player["stats"]["hp"] > 0 and player["bestScore"] == {"Grassland": 0, "Mountains": 0, "Badlands": 0}
    assert progress["id"] == session_id
    assert (progress["chapter"], progress["subChapter"]) == (1, 1)
    assert progress["bossDefeated"] == {"chapter1": False, "chapter2": False, "chapter3": False}


def test_progress_and_position_come_back_after_reload(game: Game, store: redis.Redis) -> None:
    session_id = game.start_new_game("Reloader")
    start = game.wait_for("the hero", lambda snap: snap["hero"] is not None)["hero"]
    game.hold("d", 0.5)
    moved = game.wait_for("the hero to walk right", lambda snap: snap["hero"]["x"] > start["x"] + 20)["hero"]
    assert abs(moved["y"] - start["y"]) < 4

    # Chapter progress: talking to the guide starts sub-chapter 2, and that is saved.
    game.page.evaluate(f"window.__cacheQuest.teleport({GUIDE[0] - 36}, {GUIDE[1]})")
    game.press_until(
        "Enter",
        "the guide's dialogue",
        lambda snap: snap["dialogue"] is not None,
        lambda snap: snap["dialogue"] is None,
    )
    game.screenshot("dialogue")
    while shown := game.wait_for("the dialogue", lambda snap: True)["dialogue"]:
        game.press_until("Enter", "the next line", dialogue_is_not(shown), lambda snap: snap["dialogue"] == shown)
    game.wait_for("sub-chapter 2", lambda snap: snap["game"]["subChapter"] == 2)
    wait_for_field(store, f"games:{session_id}", "subChapter", 2)

    # Map change, then a few steps on the new map, then Esc: pausing saves the position.
    game.page.evaluate(f"window.__cacheQuest.teleport({CLEARING[0]}, {CLEARING[1]}, 'Mountains')")
    game.wait_for("the Mountains", lambda snap: snap["scene"] == "quest" and snap["map"] == "Mountains")
    wait_for_field(store, f"players:{session_id}", "currentMap", "Mountains")
    game.hold("s", 0.3)
    paused = game.pause()
    game.screenshot("paused")
    where = {"x": js_round(paused["hero"]["x"]), "y": js_round(paused["hero"]["y"])}
    assert where["y"] > CLEARING[1] + 10, "the hero should have walked down before pausing"
    wait_for_field(store, f"players:{session_id}", "position", where)

    game.page.reload()
    game.wait_for_scene("title")
    game.leave_title()
    game.screenshot("menu-after-reload")
    game.choose("Continue")
    back = game.wait_for("the quest after Continue", lambda snap: snap["scene"] == "quest" and snap["hero"] is not None)
    game.screenshot("continued")
    assert back["map"] == "Mountains"
    assert abs(back["hero"]["x"] - where["x"]) <= 2 and abs(back["hero"]["y"] - where["y"]) <= 2
    assert back["game"]["subChapter"] == 2 and back["player"]["name"] == "Reloader"


def test_survivor_death_posts_the_score_and_shows_the_board(game: Game, store: redis.Redis) -> None:
    # An underscore: the game takes its name rule from GET /api/config, not from a copy of its own.
    session_id = game.start_new_game("Sir_Run")
    game.pause()
    game.choose("Main menu")
    game.wait_for_scene("menu")
    game.choose("Survivor")
    choice = game.wait_for("the map choice", lambda snap: (snap["menu"] or {}).get("title") == "Survivor: pick a map")
    # The server's boards (the tests add boards of their own) that this game can draw.
    assert [label.split()[0] for label in choice["menu"]["options"]] == ["Grassland", "Mountains", "Badlands"]
    game.screenshot("survivor-maps")
    game.choose("Mountains")
    game.wait_for("points on the clock", lambda snap: snap["scene"] == "survivor" and snap["survivor"]["score"] >= 3)
    game.screenshot("survivor")

    game.page.evaluate("window.__cacheQuest.endSurvivorRun()")
    over = game.wait_for("the leaderboard overlay", lambda snap: snap["leaderboard"] is not None)
    game.screenshot("game-over")
    score = over["survivor"]["score"]
    member = f"Sir_Run-{session_id}"
    key = "leaderboards:survivor-Mountains"
    assert over["survivor"]["result"] == {"isPersonalBest": True, "posted": True}
    assert store.zscore(key, member) == score
    rank = store.zrevrank(key, member)
    assert isinstance(rank, int), f"{member} is not on {key}"
    mine = [entry for entry in over["leaderboard"]["entries"] if entry["own"]]
    assert mine == [{"rank": rank + 1, "name": "Sir_Run", "score": score, "own": True}]
    assert over["leaderboard"]["ownRank"] == rank + 1
    wait_for_field(store, f"players:{session_id}", "bestScore.Mountains", score)

    # The Leaderboards screen from the main menu shows the same entry.
    game.choose("Main menu")
    game.wait_for_scene("menu")
    game.choose("Leaderboards")
    game.wait_for("the Grassland board", lambda snap: (snap["leaderboard"] or {}).get("map") == "Grassland")

    def shows_mountains(snap: Snapshot) -> bool:
        board = snap["leaderboard"]
        return board is not None and board["map"] == "Mountains"

    board = game.press_until(
        "ArrowRight", "the Mountains board", shows_mountains, lambda snap: snap["leaderboard"]["map"] == "Grassland"
    )["leaderboard"]
    game.screenshot("leaderboards")
    assert {"rank": rank + 1, "name": "Sir_Run", "score": score, "own": True} in board["entries"]


def test_a_save_survives_transient_errors(game: Game, store: redis.Redis) -> None:
    session_id = game.start_new_game("Sturdy")
    failures_left = [3]

    def flaky_saves(route: Route) -> None:
        """The first PATCHes meet a struggling server: 503, 429, 503, each asking to retry after 1 s."""
        if route.request.method != "PATCH" or failures_left[0] == 0:
            route.continue_()
            return
        failures_left[0] -= 1
        status = 429 if failures_left[0] == 1 else 503
        body = {"status": status, "message": "injected by the test"}
        route.fulfill(status=status, headers={"Retry-After": "1"}, json=body)

    game.page.route("**/api/playerstate", flaky_saves)
    game.page.evaluate(f"window.__cacheQuest.teleport({CLEARING[0]}, {CLEARING[1]})")
    game.pause()
    game.wait_for("the retry indicator", lambda snap: snap["save"]["phase"] == "retrying")
    game.screenshot("retrying")
    game.wait_for("the save to land", lambda snap: snap["save"]["phase"] == "saved", timeout_s=30)
    assert failures_left == [0]
    assert document(store, f"players:{session_id}")["position"] == {"x": CLEARING[0], "y": CLEARING[1]}
