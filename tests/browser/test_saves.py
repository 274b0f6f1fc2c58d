"""Saves a player can trust, in a real browser: two tabs, merge patches, Reset progress."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from playwright.sync_api import Request

from tests.browser.conftest import CHROMIUM, SKIP_REASON, Game, Snapshot, is_paused
from tests.browser.test_game import CLEARING, document, wait_for_field

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]

NEWER_SAVE_LOADED = "Another tab or device saved this game since: its newer save is loaded."


def paused_or_reloaded(snap: Snapshot) -> bool:
    return is_paused(snap) or snap["save"]["phase"] == "reloaded"


def test_a_tab_behind_another_loads_the_newer_save_and_says_so(game: Game, store: redis.Redis) -> None:
    session_id = game.start_new_game("TwoTabs")
    other = Game(game.page.context.new_page(), game.base_url, f"{game.test_name}-other")
    other.open()
    other.leave_title()
    other.choose("Continue")
    other.wait_for_scene("quest")
    other.page.evaluate(f"window.__cacheQuest.teleport({CLEARING[0]}, {CLEARING[1]}, 'Mountains')")
    other.wait_for("the other tab's save", lambda snap: snap["scene"] == "quest" and snap["allSaved"])
    newer = document(store, f"players:{session_id}")
    assert newer["currentMap"] == "Mountains"

    # Pausing saves, over a version the other tab has replaced: the pause menu may be gone, the
    # newer save loaded, before a look at the page catches it open.
    game.press_until(
        "Escape", "the pause menu or the newer save", paused_or_reloaded, lambda snap: snap["menu"] is None
    )
    snap = game.wait_for("the newer save", lambda snap: snap["save"]["phase"] == "reloaded")
    assert snap["save"]["detail"] == NEWER_SAVE_LOADED
    notice = game.page.locator("#save-notice")
    assert notice.is_visible() and notice.text_content() == NEWER_SAVE_LOADED
    snap = game.wait_for_scene("menu")
    game.screenshot("newer-save-loaded")
    assert snap["player"]["currentMap"] == "Mountains"
    assert document(store, f"players:{session_id}") == newer, "the other tab's save was not overwritten"
    # Going on from the newer save saves over it.
    game.choose("Continue")
    game.wait_for_scene("quest")
    game.pause()
    game.wait_for("the save to land", lambda snap: snap["allSaved"])
    assert document(store, f"players:{session_id}")["currentMap"] == "Mountains"
    other.page.close()


def test_checkpoint_saves_send_only_what_changed(game: Game, store: redis.Redis) -> None:
    session_id = game.start_new_game("Patcher")
    before = document(store, f"players:{session_id}")
    patches: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.method == "PATCH" and request.headers.get("content-type") == "application/merge-patch+json":
            assert request.headers.get("if-match"), "a merge patch names the version it applies to"
            patches.append(orjson.loads(request.post_data or b"null"))

    game.page.on("request", record)
    game.page.evaluate(f"window.__cacheQuest.teleport({CLEARING[0]}, {CLEARING[1]})")
    game.pause()  # the checkpoint: position, hit points, time
    game.wait_for("the save to land", lambda snap: snap["allSaved"])
    wait_for_field(store, f"players:{session_id}", "position", {"x": CLEARING[0], "y": CLEARING[1]})
    player_patch = next(patch["playerData"] for patch in patches if "playerData" in patch)
    assert player_patch["id"] == session_id
    assert set(player_patch) <= {"id", "position", "stats", "updatedAt"}, player_patch
    after = document(store, f"players:{session_id}")
    unchanged = {key: value for key, value in before.items() if key not in ("position", "stats", "updatedAt")}
    assert {key: after[key] for key in unchanged} == unchanged


def test_reset_progress_deletes_both_saves_after_a_confirmation(game: Game, store: redis.Redis) -> None:
    session_id = game.start_new_game("Resetter")
    game.pause()
    game.choose("Reset progress")
    confirm = game.wait_for("the confirmation", lambda snap: (snap["menu"] or {}).get("title") != "Paused")
    assert confirm["menu"]["options"] == ["No, keep them", "Yes, reset progress"]
    game.screenshot("reset-confirm")
    game.choose("No, keep them")
    game.wait_for("the pause menu again", lambda snap: (snap["menu"] or {}).get("title") == "Paused")
    assert store.exists(f"players:{session_id}", f"games:{session_id}") == 2

    game.choose("Reset progress")
    game.choose("Yes, reset progress")
    menu = game.wait_for("the main menu", lambda snap: snap["scene"] == "menu" and snap["menu"] is not None)
    game.screenshot("after-reset")
    assert store.exists(f"players:{session_id}", f"games:{session_id}") == 0
    assert menu["player"] is None and "Continue" not in menu["menu"]["options"]
    # A new game after a reset saves afresh.
    game.choose("New game")
    game.wait_for_scene("newgame")
    game.page.keyboard.type("Again")
    game.start_game_named()
    assert document(store, f"players:{session_id}")["name"] == "Again"
