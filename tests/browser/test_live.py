"""The Leaderboards screen follows its board live: a new leader shows without a reload."""

from __future__ import annotations

import pytest
import redis

from devtools.stack import Stack
from tests.browser.conftest import CHROMIUM, SKIP_REASON, Game, Snapshot
from tests.conftest import Player, eventually
from tests.test_live import live_listeners

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]

BOARD = "leaderboards:survivor-Grassland"


def test_the_board_screen_shows_a_new_leader_without_a_reload(game: Game, stack: Stack, store: redis.Redis) -> None:
    game.open()
    game.leave_title()
    game.choose("Leaderboards")
    game.wait_for("the Grassland board", lambda snap: (snap["leaderboard"] or {}).get("map") == "Grassland")
    game.page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    eventually(lambda: live_listeners(stack) == 1, 15, "the screen listens to its board")

    best = store.zrevrange(BOARD, 0, 0, withscores=True)
    score = int(best[0][1]) + 1000 if best else 1000
    rival = Player(stack.url)
    answer = rival.http.post("/api/leaderboard", json={"key": BOARD, "score": score, "member": f"Rival-{rival.id}"})
    assert answer.status_code == 200, answer.text

    def rival_leads(snap: Snapshot) -> bool:
        entries = (snap["leaderboard"] or {}).get("entries") or []
        return entries[:1] == [{"rank": 1, "name": "Rival", "score": score, "own": False}]

    game.wait_for("the rival on top of the screen", rival_leads)
    game.screenshot("live-leader")
    assert game.page.evaluate("window.__sameDocument") is True

    game.press_until("Escape", "the main menu", lambda snap: snap["scene"] == "menu", lambda s: s["scene"] != "menu")
    eventually(lambda: live_listeners(stack) == 0, 15, "the stream closed with the screen")
