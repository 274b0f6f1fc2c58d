import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, CacheQuestClient } from "../src/index.js";
import { BOARD, GATEWAY, LIMITED, failingFirst, newPlayer } from "./helpers.js";

test("a 429 is waited out (Retry-After) and retried, for a write too", async () => {
  const retries = [];
  const { client, id } = await newPlayer(LIMITED, { onRetry: (retry) => retries.push(retry) });
  await client.players.save({ id, step: 1 }, { ifNoneMatch: "*" }); // the second a player may write
  const started = Date.now();
  const { etag } = await client.players.save({ id, step: 2 }); // over the limit: 429, then through
  assert.ok(
    retries.some((retry) => retry.reason === "HTTP 429" && retry.waitMs === 1000),
    JSON.stringify(retries),
  );
  assert.ok(Date.now() - started >= 900);
  assert.deepEqual(await client.players.load(), { data: { id, step: 2 }, etag });
});

test("a 429 asking for a longer wait than a minute is the caller's to show", async () => {
  const { client } = await newPlayer(LIMITED); // two recovery attempts an hour per address there
  const outcomes = [];
  for (let i = 0; i < 3; i++) outcomes.push(await client.recover("0000-0000-0000-0000-0000").catch((error) => error));
  const limited = outcomes.find((error) => error.status === 429);
  assert.ok(limited instanceof ApiError, outcomes.map(String).join());
  assert.ok(limited.retryAfterMs > 60_000);
});

test("a 503 or a network error is retried for a call safe to repeat", async () => {
  for (const status of [503, 0]) {
    const { fetcher, calls } = failingFirst(2, status);
    const retries = [];
    const client = new CacheQuestClient({ baseUrl: GATEWAY, fetch: fetcher, onRetry: (retry) => retries.push(retry) });
    const { id } = await client.session();
    await client.games.save({ id, status }); // last write wins: a repeat writes the same
    assert.equal(retries.length, 2);
    assert.deepEqual(calls.slice(0, 3), ["GET", "GET", "GET"]);
    assert.deepEqual((await client.games.load()).data, { id, status });
  }
});

test("a 503 is not retried for a call that is not safe to repeat, nor past maxAttempts", async () => {
  const { fetcher, calls } = failingFirst(1, 503);
  const client = new CacheQuestClient({ baseUrl: GATEWAY, fetch: fetcher });
  const refused = await client
    .leaderboard(BOARD)
    .startRun()
    .catch((error) => error); // each start is a new run
  assert.equal(refused.status, 503);
  assert.match(refused.message, /injected/);
  assert.deepEqual(calls, ["POST"]);

  const impatient = failingFirst(5, 503);
  const once = new CacheQuestClient({ baseUrl: GATEWAY, fetch: impatient.fetcher, maxAttempts: 2 });
  await assert.rejects(once.config(), { status: 503 });
  assert.equal(impatient.calls.length, 2);
});
