"""The seed's client flow as a real browser sends it: Chromium's fetch(), its headers, cookies and Origin."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from playwright.sync_api import Browser

from devtools.stack import Stack

pytestmark = pytest.mark.browser

# The seed's client, reduced to its requests: URLs spelled as it spells them (writes with the slash).
# Its board is one of the tests' own (the shared stack's game boards hold other tests' scores).
SEED_FLOW_JS = """async () => {
  const send = (method, url, body) => fetch(url, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const save = async (url, body) => {
    const first = await send("PATCH", url, body);
    return first.status === 404 ? send("POST", url, body) : first;
  };
  const answer = async (response) => [response.status, await response.json()];
  const me = (await (await fetch("/session")).json()).id;
  const seen = { me };
  seen.newPlayer = (await fetch(`/api/playerstate/${me}`)).status;
  seen.createPlayer = await answer(await send("POST", "/api/playerstate/", { playerData: { id: me, name: "Link" } }));
  seen.createGame = await answer(await send("POST", "/api/gamestate/", { gameData: { id: me, chapter: 1 } }));
  seen.checkpoint = await answer(await save("/api/playerstate/", { playerData: { id: me, name: "Link", hp: 7 } }));
  seen.reload = await (await fetch(`/api/playerstate/${me}`)).json();
  const score = { key: "leaderboards:survivor-Seed", score: 4321, member: `Link-${me}` };
  seen.score = await answer(await send("POST", "/api/leaderboard/", score));
  seen.top = await answer(await fetch("/api/leaderboard/leaderboards:survivor-Seed?count=10"));
  return seen;
}"""


def test_the_seed_clients_requests_from_chromium(browser: Browser, stack: Stack) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/healthz")  # any page of the origin: the requests are same-origin, as the seed's
        seen: dict[str, Any] = page.evaluate(SEED_FLOW_JS)
    finally:
        context.close()
    me = seen["me"]
    assert seen["newPlayer"] == 404
    assert seen["createPlayer"] == [200, {"status": 200, "message": "Player created"}]
    assert seen["createGame"] == [200, {"status": 200, "message": "Game created"}]
    assert seen["checkpoint"] == [200, {"status": 200, "message": "Player updated"}]
    assert seen["reload"] == {"id": me, "name": "Link", "hp": 7}
    assert seen["score"][0] == 200
    assert seen["top"][0] == 200  # the seed's fields, and each entry's rank besides
    assert {"value": f"Link-{me}", "score": 4321} in [
        {"value": e["value"], "score": e["score"]} for e in seen["top"][1]
    ]
    store = redis.Redis.from_url(stack.redis_url)
    try:
        assert orjson.loads(store.execute_command("JSON.GET", f"players:{me}")) == seen["reload"]
        assert orjson.loads(store.execute_command("JSON.GET", f"games:{me}")) == {"id": me, "chapter": 1}
        assert store.zscore("leaderboards:survivor-Seed", f"Link-{me}") == 4321
    finally:
        store.close()
