import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, CacheQuestClient } from "../src/index.js";
import { GATEWAY, newPlayer } from "./helpers.js";

test("a session is made once and kept by the client's cookie", async () => {
  const { client, id } = await newPlayer();
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.equal((await client.session()).id, id);
  assert.equal(await client.sessionId(), id);
  assert.notEqual((await newPlayer()).id, id, "another client is another player");
});

test("the config names the maps and their boards", async () => {
  const config = await new CacheQuestClient({ baseUrl: GATEWAY }).config();
  assert.ok(config.maps.includes("Grassland"));
  assert.equal(config.leaderboards.Grassland, "leaderboards:survivor-Grassland");
  assert.equal(config.season.mode, "none");
});

test("a recovery code carries the player to another client; a new code revokes the old", async () => {
  const { client, id } = await newPlayer();
  await client.players.save({ id, name: "Traveller" });
  const first = await client.issueRecoveryCode();
  assert.match(first, /^[0-9A-Z]{4}(-[0-9A-Z]{4}){4}$/);
  const code = await client.issueRecoveryCode();

  const elsewhere = await newPlayer();
  assert.equal(await elsewhere.client.recover(code.toLowerCase()), id);
  assert.equal(await elsewhere.client.sessionId(), id);
  assert.equal((await elsewhere.client.session()).id, id, "the new cookie is the player's");
  assert.equal((await elsewhere.client.players.load()).data.name, "Traveller");

  const refused = await (await newPlayer()).client.recover(first).catch((error) => error);
  assert.ok(refused instanceof ApiError);
  assert.equal(refused.status, 403);
  assert.match(refused.message, /code/i);
});

test("call() reaches a route the client does not wrap, with the same session and rules", async () => {
  const { client, id } = await newPlayer();
  const answer = await client.call("GET", `/api/playerstate/${id}/`, { safe: true });
  assert.equal(answer.status, 404, "the session's cookie went with it: not a 403");
  assert.equal((await answer.json()).message, "Not Found");
});

test("an unreachable server is ApiError 0 once the attempts are spent", async () => {
  const retries = [];
  const client = new CacheQuestClient({
    baseUrl: "http://127.0.0.1:9",
    maxAttempts: 2,
    onRetry: (r) => retries.push(r),
  });
  const error = await client.session().catch((caught) => caught);
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 0);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].reason, "network error");
});
