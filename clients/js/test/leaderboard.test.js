import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, CacheQuestClient } from "../src/index.js";
import { BOARD, GATEWAY, newPlayer } from "./helpers.js";

test("a score by name, the page with ranks, and the player's place with neighbours", async () => {
  const players = [];
  for (let i = 0; i < 4; i++) players.push(await newPlayer());
  const base = 1_000_000 + Math.floor(Math.random() * 1_000_000) * 10;
  for (const [i, { client }] of players.entries()) {
    const answer = await client.leaderboard(BOARD).submit(base + i, { name: `Ranked${i}` });
    assert.equal(answer.status, 200);
  }
  const [first] = players;
  const board = first.client.leaderboard(BOARD);
  await board.submit(base - 5, { name: "Ranked0" }); // lower: the best stays
  await board.submit(base, { member: `Renamed-${first.id}` }); // a new name moves the entry
  const top = await board.page({ count: 100 });
  const mine = top.find((entry) => entry.value === `Renamed-${first.id}`);
  assert.equal(mine.score, base);
  assert.deepEqual(
    top.map((entry) => entry.rank),
    top.map((_, i) => i + 1),
  );
  assert.deepEqual(await board.page({ count: 1, offset: mine.rank - 1 }), [mine]);

  const me = await board.me({ around: 1 });
  assert.deepEqual(
    { rank: me.rank, score: me.score, value: me.value },
    { rank: mine.rank, score: base, value: mine.value },
  );
  assert.deepEqual(
    me.around.map((entry) => entry.rank),
    [mine.rank - 1, mine.rank, mine.rank + 1].filter((r) => r <= top.length),
  );
});

test("an empty board is an empty page, a player without an entry has no place, no seasons is null", async () => {
  const { client } = await newPlayer();
  const empty = client.leaderboard("leaderboards:survivor-Empty");
  assert.deepEqual(await empty.page(), []);
  assert.equal(await empty.me(), null);
  assert.equal(await empty.seasons(), null);
  const anonymous = new CacheQuestClient({ baseUrl: GATEWAY });
  assert.ok(Array.isArray(await anonymous.leaderboard("leaderboards:survivor-Grassland").page()));
});

test("a refused score is an ApiError saying why", async () => {
  const { client, id } = await newPlayer();
  const other = await newPlayer();
  const cases = [
    [() => client.leaderboard("leaderboards:nope").submit(1, { name: "Hero" }), 400],
    [() => client.leaderboard(BOARD).submit(1, { member: `Hero-${other.id}` }), 403],
    [() => client.leaderboard(BOARD).submit(Number.MAX_VALUE, { name: "Hero" }), 400],
    [() => client.leaderboard(BOARD).submit(1, { name: "two words" }), 400],
    [() => client.leaderboard(BOARD).me({ around: 9999 }), 400],
  ];
  for (const [call, status] of cases) {
    const error = await call().catch((caught) => caught);
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.status, status, error.message);
  }
  assert.equal(id.length, 32);
});
