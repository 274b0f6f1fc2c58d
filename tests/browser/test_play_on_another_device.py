"""A recovery code carries a hero to another browser: one shows it from the pause menu, another enters it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from playwright.sync_api import Browser

from devtools.stack import Stack
from tests.browser.conftest import CHROMIUM, SKIP_REASON, Game, fresh_game
from tests.browser.test_game import js_round, wait_for_field

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]

WRONG_CODE = "ABCD-EFGH-JKMN-PQRS-TVWX"


@pytest.fixture
def other_browser(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Game]:
    """A second browser context: its own cookie jar, as another device would have."""
    with fresh_game(browser, stack.url, f"{request.node.name}-other") as other:
        yield other


def test_a_code_from_the_pause_menu_carries_the_hero_to_another_browser(
    game: Game, other_browser: Game, store: redis.Redis
) -> None:
    session_id = game.start_new_game("Traveller")
    game.hold("d", 0.4)
    paused = game.pause()
    where = {"x": js_round(paused["hero"]["x"]), "y": js_round(paused["hero"]["y"])}
    wait_for_field(store, f"players:{session_id}", "position", where)  # pausing saved it
    game.choose("Play on another device")
    shown = game.wait_for("a recovery code", lambda snap: (snap["recovery"] or {}).get("code") is not None)
    game.screenshot("recovery-code")
    code = shown["recovery"]["code"]
    assert shown["recovery"]["error"] is None

    other = other_browser
    other.open()
    other.press_until(
        "c", "the code entry", lambda snap: snap["scene"] == "recover", lambda snap: snap["scene"] == "title"
    )
    other.let_frames_pass()
    other.page.keyboard.type(WRONG_CODE)
    other.wait_for("the wrong code", lambda snap: snap["codeEntry"]["code"] == WRONG_CODE)
    other.press("Enter")
    refused = other.wait_for("the refusal", lambda snap: "Unknown" in snap["codeEntry"]["message"])
    other.screenshot("wrong-code")
    assert refused["scene"] == "recover" and refused["sessionId"] != session_id
    # The game reads Backspace once a frame (KAPLAY's onKeyPressRepeat): two presses within one frame
    # are one, as a fast Playwright loop once made them, so each waits for the frame after.
    for _ in WRONG_CODE:
        other.press("Backspace")
        other.let_frames_pass(1)
    other.wait_for("the entry cleared", lambda snap: snap["codeEntry"]["code"] == "")
    other.page.keyboard.type(code.lower().replace("-", " "))  # as a person might type it
    other.wait_for("the typed code", lambda snap: snap["codeEntry"]["code"] == code.replace("-", " "))
    other.press("Enter")
    menu = other.wait_for(
        "the main menu, as the first player",
        lambda snap: snap["scene"] == "menu" and snap["menu"] is not None and snap["sessionId"] == session_id,
    )
    other.screenshot("recovered-menu")
    assert menu["player"]["name"] == "Traveller" and "Continue" in menu["menu"]["options"]
    assert other.session_id_from_server() == session_id

    other.choose("Continue")
    back = other.wait_for("the quest", lambda snap: snap["scene"] == "quest" and snap["hero"] is not None)
    other.screenshot("recovered-quest")
    assert abs(back["hero"]["x"] - where["x"]) <= 2 and abs(back["hero"]["y"] - where["y"]) <= 2
