"""The game with API.md's v3: every survivor round a verified run (LEADERBOARD_VERIFIED=all costs the
player nothing), on a stack of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser

from devtools.stack import Stack
from shared import keys
from tests.browser.conftest import CHROMIUM, SKIP_REASON, Game, fresh_game
from tests.conftest import ARTIFACTS, fresh_redis, started

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def verified_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        fresh_redis(tmp_path_factory.mktemp("verified")) as url,
        started(url, ARTIFACTS / "logs/browser_verified.log", 1, 1, LEADERBOARD_VERIFIED="all") as running,
    ):
        yield running


@pytest.fixture
def verified_game(browser: Browser, verified_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Game]:
    with fresh_game(browser, verified_stack.url, request.node.name) as fresh:
        yield fresh


@pytest.fixture
def verified_store(verified_stack: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(verified_stack.redis_url, decode_responses=True) as client:
        yield client


def test_a_survivor_round_posts_its_score_with_a_verified_run(verified_game: Game, verified_store: redis.Redis) -> None:
    game = verified_game
    session_id = game.start_new_game("Verified")
    game.pause()
    game.choose("Main menu")
    game.wait_for_scene("menu")
    game.choose("Survivor")
    game.wait_for("the map choice", lambda snap: (snap["menu"] or {}).get("title") == "Survivor: pick a map")
    game.choose("Badlands")
    # Past RUN_MIN_S (1 s): two points a second.
    game.wait_for("points on the clock", lambda snap: snap["scene"] == "survivor" and snap["survivor"]["score"] >= 3)
    game.page.evaluate("window.__cacheQuest.endSurvivorRun()")
    over = game.wait_for("the leaderboard overlay", lambda snap: snap["leaderboard"] is not None)
    game.screenshot("verified-game-over")
    assert over["survivor"]["result"] == {"isPersonalBest": True, "posted": True}
    board = keys.leaderboard("Badlands")
    assert verified_store.zscore(board, f"Verified-{session_id}") == over["survivor"]["score"]
    runs = list(verified_store.scan_iter(match=keys.run(board, "*")))
    used = [run for run in runs if verified_store.hget(run, "player") == session_id]
    assert len(used) == 1 and verified_store.hget(used[0], "used")


def test_the_pause_menu_downloads_and_deletes_the_players_data(
    verified_game: Game, verified_store: redis.Redis
) -> None:
    game = verified_game
    session_id = game.start_new_game("Leaver")
    game.pause()
    game.screenshot("pause-my-data")
    with game.page.expect_download() as downloading:
        game.choose("Download my data")
    downloaded = json.loads(Path(downloading.value.path()).read_text())
    assert downloading.value.suggested_filename == "cache-quest-my-data.json"
    assert downloaded["id"] == session_id and downloaded["saves"]["player"]["name"] == "Leaver"
    assert downloaded["saves"]["game"]["id"] == session_id and downloaded["recovery"] == {"active": False}
    assert (
        game.wait_for("the export kept", lambda snap: snap["account"] is not None)["account"]["exported"] == downloaded
    )

    game.choose("Delete my data")
    game.wait_for("the confirmation", lambda snap: (snap["menu"] or {}).get("options", [""])[0] == "No, keep my data")
    game.screenshot("delete-my-data")
    game.choose("Yes, delete my data")
    game.wait_for("a fresh start", lambda snap: snap["scene"] == "title" and snap["sessionId"] != session_id)
    assert game.session_id_from_server() not in (session_id, None)  # a new player
    assert not verified_store.exists(keys.player(session_id), keys.game(session_id), keys.session(session_id))
