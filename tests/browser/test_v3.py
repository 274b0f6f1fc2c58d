"""The game with API.md's v3: every survivor round a verified run (LEADERBOARD_VERIFIED=all costs the
player nothing), on a stack of its own."""

from __future__ import annotations

from collections.abc import Iterator

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
