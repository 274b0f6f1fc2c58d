"""Browser fixtures: Debian's Chromium, driven by Playwright, playing the game served by `stack`.

The game is opened with `?test=1`, which installs `window.__cacheQuest` (documented in
web/public/src/testhook.js): the tests read the game's state through it and play with real key
presses. Every visited scene leaves a screenshot in test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, sync_playwright

from devtools.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = f"{CHROMIUM} is missing: run devtools/ensure_chromium.sh as root (apt-get install chromium)"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
BROWSER_TESTS = Path(__file__).resolve().parent
# Runs before a failure counts: a key pressed in headless Chromium has, rarely, opened nothing even when
# pressed again (Game.press_until), on a quiet box too (docs/status.md). A second run in a fresh
# context tells that from a broken game, and pytest reports every rerun ("R", and in the summary).
RERUNS = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.flaky(reruns=RERUNS))


Snapshot = dict[str, Any]

AFTER_FRAMES_JS = """(frames) => new Promise((done) => {
  const tick = (left) => (left ? requestAnimationFrame(() => tick(left - 1)) : done());
  tick(frames);
})"""

# Decodes a PNG inside the page and measures how much the picture varies: a blank canvas has one colour.
PICTURE_STATS_JS = """async (pngBase64) => {
  const bytes = Uint8Array.from(atob(pngBase64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const colours = new Set();
  let sum = 0, sumOfSquares = 0, count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const luminance = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += luminance;
    sumOfSquares += luminance * luminance;
    count += 1;
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  const mean = sum / count;
  return { colours: colours.size, stddev: Math.sqrt(sumOfSquares / count - mean * mean) };
}"""


def is_paused(snap: Snapshot) -> bool:
    return (snap["menu"] or {}).get("title") == "Paused"


def selection_is(index: int) -> Callable[[Snapshot], bool]:
    return lambda snap: snap["menu"] is not None and snap["menu"]["selected"] == index


def selection_is_not(index: int) -> Callable[[Snapshot], bool]:
    return lambda snap: snap["menu"] is not None and snap["menu"]["selected"] != index


class Game:
    """One browser tab playing Cache Quest."""

    def __init__(self, page: Page, base_url: str, test_name: str) -> None:
        self.page = page
        self.base_url = base_url
        self.test_name = test_name

    def open(self) -> Snapshot:
        self.page.goto(f"{self.base_url}/?test=1")
        return self.wait_for_scene("title")

    def snapshot(self) -> Snapshot | None:
        """The hook's snapshot, or None while the page is (re)loading."""
        result: Snapshot | None = self.page.evaluate("window.__cacheQuest?.snapshot() ?? null")
        return result

    def wait_for(self, description: str, predicate: Callable[[Snapshot], bool], timeout_s: float = 20) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        last: Snapshot | None = None
        while time.monotonic() < deadline:
            last = self.snapshot()
            if last is not None and predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {description}; last snapshot: {last}")

    def wait_for_scene(self, scene: str) -> Snapshot:
        snap = self.wait_for(f"scene {scene!r}", lambda snap: snap["scene"] == scene)
        self.let_frames_pass()
        return snap

    def let_frames_pass(self, frames: int = 3) -> None:
        """Widgets ignore keys in the frame they appear in, as a player's held key must not act twice."""
        self.page.evaluate(AFTER_FRAMES_JS, frames)

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)

    def hold(self, key: str, seconds: float) -> None:
        self.page.keyboard.down(key)
        time.sleep(seconds)
        self.page.keyboard.up(key)

    def press_until(
        self,
        key: str,
        description: str,
        predicate: Callable[[Snapshot], bool],
        may_press_again: Callable[[Snapshot], bool],
        attempts: int = 3,
    ) -> Snapshot:
        """Presses `key` until `predicate` holds, pressing again only while `may_press_again` shows the
        key had no effect. Twice on CI a key pressed right after a teleport never opened what it
        should, and it did not happen again in dozens of runs, under load or CPU throttling; a repeat
        is reported as a warning with the keys the page received, so it is not hidden."""
        for _ in range(attempts - 1):
            self.let_frames_pass()
            self.press(key)
            try:
                return self.wait_for(description, predicate, timeout_s=3)
            except AssertionError:
                snap = self.snapshot()
            if snap is None or not may_press_again(snap):
                return self.wait_for(description, predicate)  # the key acted; what follows may be slow
            keys = snap["keys"]
            warnings.warn(f"{key} pressed again for {description}; the keys the page received: {keys}", stacklevel=2)
        self.let_frames_pass()
        self.press(key)
        return self.wait_for(description, predicate)

    def pause(self) -> Snapshot:
        return self.press_until("Escape", "the pause menu", is_paused, lambda snap: snap["menu"] is None)

    def choose(self, label_prefix: str) -> None:
        """Selects the menu option starting with `label_prefix` with the arrow keys, then presses Enter."""

        def offers_it(snap: Snapshot) -> bool:
            menu = snap["menu"]
            return menu is not None and any(option.startswith(label_prefix) for option in menu["options"])

        menu = self.wait_for(f"a menu offering {label_prefix!r}", offers_it)["menu"]
        target = next(i for i, option in enumerate(menu["options"]) if option.startswith(label_prefix))
        self.let_frames_pass()
        while (selected := self.menu_selection()) != target:
            self.press_until("ArrowDown", "the selection to move", selection_is_not(selected), selection_is(selected))
        self.press("Enter")

    def menu_selection(self) -> int:
        selected: int = self.wait_for("a menu", lambda snap: snap["menu"] is not None)["menu"]["selected"]
        return selected

    def screenshot(self, name: str) -> bytes:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        return self.page.screenshot(path=str(ARTIFACTS / f"{self.test_name}-{name}.png"))

    def picture_stats(self, png: bytes) -> dict[str, float]:
        stats: dict[str, float] = self.page.evaluate(PICTURE_STATS_JS, base64.b64encode(png).decode())
        return stats

    def session_id_from_server(self) -> str:
        """What GET /session answers for this tab's cookie, asked independently of the game."""
        session_id: str = self.page.evaluate(
            "fetch('/session').then((answer) => answer.json()).then((body) => body.id)"
        )
        return session_id

    def leave_title(self) -> Snapshot:
        """Enter on the title screen, until the main menu shows."""
        return self.press_until(
            "Enter", "the main menu", lambda snap: snap["menu"] is not None, lambda snap: snap["scene"] == "title"
        )

    def start_game_named(self) -> Snapshot:
        """Enter on the name entry, until the quest runs and both documents are saved."""
        return self.press_until(
            "Enter",
            "the quest, saved",
            lambda snap: snap["scene"] == "quest" and snap["allSaved"],
            lambda snap: snap["scene"] == "newgame",
        )

    def start_new_game(self, name: str) -> str:
        """Title, menu, New game, the name typed in: until the quest runs and both documents are saved."""
        self.open()
        self.screenshot("title")
        self.leave_title()
        self.screenshot("menu")
        self.choose("New game")
        self.wait_for_scene("newgame")
        self.page.keyboard.type(name)
        self.wait_for("the typed name", lambda snap: snap["nameEntry"]["name"] == name)
        self.screenshot("newgame")
        snap = self.start_game_named()
        self.screenshot("quest")
        session_id: str = snap["sessionId"]
        return session_id


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Package-scoped: Playwright's sync API runs an event loop on this thread while it is open, so it
    must close before the tests that start their own (tests/test_pipelined.py)."""
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextmanager
def fresh_game(browser: Browser, url: str, name: str) -> Iterator[Game]:
    """A game in a browser context of its own (its own cookie jar, so its own session); uncaught
    page errors fail the test once it is done."""
    context = browser.new_context(viewport={"width": 960, "height": 540})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    yield Game(page, url, name)
    context.close()
    assert not page_errors, f"uncaught errors in the page {name}: {page_errors}"


@pytest.fixture
def game(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Game]:
    """A fresh browser context (so a fresh session cookie) per test; uncaught page errors fail the test."""
    with fresh_game(browser, stack.url, request.node.name) as fresh:
        yield fresh


@pytest.fixture
def store(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    client.close()
