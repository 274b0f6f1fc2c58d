"""The operators' console in Chromium: sign in, find a player, ban them off the board, remove an entry,
replay a dead letter, read the audit. A screenshot of each page lands in test-artifacts/browser/."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from devtools.stack import Stack
from shared import keys
from shared.protocol import Event, EventType
from tests.browser.conftest import ARTIFACTS, CHROMIUM, SKIP_REASON
from tests.conftest import ARTIFACTS as TEST_ARTIFACTS
from tests.conftest import Player, fresh_redis, started
from tests.test_admin import ADMIN_ENV, ALICE, GRASSLAND, dead_letter, player_on, top

SEASONS = {"LEADERBOARD_SEASON": "daily"}
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """With daily seasons: the console's season pages, and a ban's archives."""
    with (
        fresh_redis(tmp_path_factory.mktemp("admin-browser-redis")) as url,
        started(url, TEST_ARTIFACTS / "logs/admin_browser.log", 1, 1, **SEASONS, **ADMIN_ENV) as running,
    ):
        yield running


@pytest.fixture
def console(browser: Browser, admin_stack: Stack) -> Iterator[Page]:
    """The console in a browser context of its own, signed in; page errors, CSP reports and 5xx fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response", lambda answer: problems.append(f"{answer.status} {answer.url}") if answer.status >= 500 else None
    )
    page.on("console", lambda message: problems.append(message.text) if is_problem(message) else None)
    page.goto(f"{admin_stack.url}/admin")
    shot(page, "sign-in")
    page.fill("#token", ALICE)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#finder")).to_be_visible()
    yield page
    context.close()
    assert not problems, f"errors in the console page: {problems}"


def is_problem(message: ConsoleMessage) -> bool:
    """An error in the page, a CSP violation included; not the 404 of an empty board, which it shows as such."""
    return message.type == "error" and not message.text.startswith("Failed to load resource")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def test_an_operator_finds_a_player_bans_them_off_the_board_and_unbans_them(console: Page, admin_stack: Stack) -> None:
    name = f"Cheat{secrets.token_hex(4)}"  # a rerun finds only its own
    cheat = player_on(admin_stack, name, {GRASSLAND: 990_000})
    member = f"{name}-{cheat.id}"
    shot(console, "players")
    console.fill("#finder input[name=q]", name)
    console.click("#finder button")
    expect(console.locator("#found")).to_have_text("1 found")
    shot(console, "players-found")
    console.click(f"a[href='#/player/{cheat.id}']")
    expect(console.locator("#player-id")).to_have_text(cheat.id)
    expect(console.locator("#ban-state")).to_have_text("not banned")
    expect(console.get_by_text("recovery code not active")).to_be_visible()
    expect(console.get_by_role("cell", name=member)).to_have_count(2)  # the season (its board), all-time
    shot(console, "player")

    console.click("#ban")
    console.click("#ban")  # the second press confirms
    expect(console.locator("#ban-state")).to_have_text("banned")
    expect(console.locator("#status")).to_have_text("Ban: Player banned")
    expect(console.locator("#no-entries")).to_be_visible()
    assert member not in [row["value"] for row in top(admin_stack, GRASSLAND)]
    shot(console, "player-banned")

    console.click("a[href='#/boards']")
    console.click(f"a[href='#/board/{GRASSLAND.replace(':', '%3A')}']")
    expect(console.locator("h2")).to_contain_text(GRASSLAND)
    expect(console.get_by_role("cell", name=member)).to_have_count(0)
    shot(console, "board-without-the-banned")
    label = datetime.now(UTC).strftime("%Y-%m-%d")
    console.get_by_role("link", name=label).click()  # the season's archive: the ban reached it too
    expect(console.locator("h2")).to_contain_text(f"season {label}")
    expect(console.get_by_role("cell", name=member)).to_have_count(0)

    console.goto(f"{admin_stack.url}/admin#/player/{cheat.id}")
    console.click("#unban")
    expect(console.locator("#ban-state")).to_have_text("not banned")
    assert member in [row["value"] for row in top(admin_stack, GRASSLAND)]


def test_an_operator_erases_a_player_after_typing_their_id(console: Page, admin_stack: Stack) -> None:
    gone = player_on(admin_stack, f"Gone{secrets.token_hex(4)}", {GRASSLAND: 12})
    console.goto(f"{admin_stack.url}/admin#/player/{gone.id}")
    expect(console.locator("#erase")).to_be_disabled()
    console.fill("#erase-confirm", gone.id[:-1])
    expect(console.locator("#erase")).to_be_disabled()
    console.fill("#erase-confirm", gone.id)
    shot(console, "player-erase")
    console.click("#erase")
    expect(console.locator("#status")).to_have_text("Erase: Account deleted")
    expect(console.locator("#no-entries")).to_be_visible()
    assert gone.id not in str(top(admin_stack, GRASSLAND))


def test_an_operator_removes_an_entry_from_a_board_page(console: Page, admin_stack: Stack) -> None:
    gone = player_on(admin_stack, "Browsergone", {GRASSLAND: 995_000})
    member = f"Browsergone-{gone.id}"
    console.goto(f"{admin_stack.url}/admin#/board/{GRASSLAND}")
    row = console.locator("tr", has=console.get_by_role("cell", name=member))
    expect(row).to_be_visible()
    shot(console, "board")
    row.get_by_role("button", name="Remove").click()
    row.get_by_role("button", name="Really remove?").click()
    expect(console.locator("#status")).to_have_text("Remove: Entry removed")
    expect(console.get_by_role("cell", name=member)).to_have_count(0)
    assert member not in [row["value"] for row in top(admin_stack, GRASSLAND)]


def test_an_operator_replays_a_dead_letter_and_reads_the_audit(console: Page, admin_stack: Stack) -> None:
    lost = Player(admin_stack.url)
    score = Event.new(
        EventType.SCORE_SUBMIT, lost.id, {"key": GRASSLAND, "score": 4321, "member": f"Lost-{lost.id}"}, 1, 0
    )
    with redis.Redis.from_url(admin_stack.redis_url) as db:
        letter = dead_letter(db, score)
        console.click("a[href='#/streams']")
        row = console.locator(f"tr[data-letter='{letter}']")
        expect(row).to_contain_text("it replays freely")
        expect(console.get_by_text("saves: pending 0, lag 0")).to_be_visible()
        shot(console, "streams")
        row.get_by_role("button", name="Replay").click()
        expect(console.locator("#status")).to_have_text(f"Replay: Dead letter {letter} replayed")
        expect(row).to_have_count(0)
        assert db.zscore(GRASSLAND, f"Lost-{lost.id}") == 4321
        assert not db.xrange(keys.dead_letters(0), letter, letter)
    console.click("a[href='#/audit']")
    first = console.locator("tbody tr").first
    expect(first).to_contain_text("replay-dead-letter")
    expect(first).to_contain_text("alice")
    shot(console, "audit")


def test_the_token_stays_in_the_tab_and_a_wrong_one_signs_no_one_in(
    console: Page, browser: Browser, admin_stack: Stack
) -> None:
    assert console.evaluate("sessionStorage.getItem('cq-admin-token')") == ALICE
    assert console.evaluate("localStorage.length") == 0 and console.context.cookies() == []
    other_tab = console.context.new_page()
    other_tab.goto(f"{admin_stack.url}/admin")
    expect(other_tab.locator("#token-form")).to_be_visible()  # a new tab asks again
    other_tab.fill("#token", "w" * 48)
    other_tab.click("#token-form button[type=submit]")
    expect(other_tab.locator("#status")).to_contain_text("Sign in:")
    expect(other_tab.locator("#nav")).to_be_hidden()
    other_tab.close()
    console.click("#sign-out")
    expect(console.locator("#token-form")).to_be_visible()
    assert console.evaluate("sessionStorage.getItem('cq-admin-token')") is None


def test_a_board_page_pages_through_its_entries(console: Page, admin_stack: Stack) -> None:
    board = keys.leaderboard("Seed")
    for points in range(21):
        player_on(admin_stack, f"Pager{points}", {board: 100 + points})
    console.goto(f"{admin_stack.url}/admin#/board/{board}")
    expect(console.locator("tbody tr")).to_have_count(20)
    expect(console.locator("tbody tr").first).to_contain_text("Pager20-")
    console.get_by_role("link", name="Next →").click()
    expect(console.locator("tbody tr")).to_have_count(1)
    expect(console.locator("tbody tr").first).to_contain_text("Pager0-")
    expect(console.locator("tbody tr td").first).to_have_text("21")
    shot(console, "board-page-2")
    console.get_by_role("link", name="← Previous").click()
    expect(console.locator("tbody tr")).to_have_count(20)
