// v3's verified runs and the player's own data (issue 29). Skipped, each saying why, while the
// gateway under test has no such route; they run as soon as its /openapi.json lists it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError } from "../src/index.js";
import { GATEWAY, LIMITED, newPlayer, unlessRoute } from "./helpers.js";

const BOARD = "leaderboards:survivor-Recovered";
const NO_RUNS = await unlessRoute(LIMITED, "post", "/api/leaderboard/{key}/runs");
const NO_ACCOUNT = await unlessRoute(GATEWAY, "get", "/api/account");

// On the limited gateway, where RUN_MIN_S=0: a run may end at once.
test(
  "a verified run: started, its score taken once, refused when used again or unknown",
  { skip: NO_RUNS },
  async () => {
    const { client } = await newPlayer(LIMITED);
    const board = client.leaderboard(BOARD);
    const run = await board.startRun();
    assert.equal(typeof run.run, "string");
    assert.ok(Math.abs(run.startedAt - Date.now()) < 60_000);
    assert.equal((await board.submit(0, { name: "Verified", run: run.run })).status, 200);
    await assert.rejects(board.submit(0, { name: "Verified", run: run.run }), { name: "ApiError", status: 409 });
    await assert.rejects(board.submit(0, { name: "Verified", run: "no-such-run" }), { name: "ApiError", status: 410 });
    const other = await newPlayer(LIMITED);
    const theirs = await other.client.leaderboard(BOARD).startRun();
    await assert.rejects(board.submit(0, { name: "Verified", run: theirs.run }), { name: "ApiError", status: 403 });
  },
);

test("a run's score whose answer was lost: the retry's 409 is the first try's, landed", { skip: NO_RUNS }, async () => {
  let lost = false;
  // The first score the server takes, and its answer is lost on the way back.
  const losing = async (url, init) => {
    const response = await fetch(url, init);
    if (lost || !url.endsWith("/api/leaderboard") || response.status !== 200) return response;
    lost = true;
    await response.body?.cancel();
    return new Response(JSON.stringify({ status: 503, message: "lost" }), {
      status: 503,
      headers: { "Retry-After": "0" },
    });
  };
  const { client, id } = await newPlayer(LIMITED, { fetch: losing });
  const board = client.leaderboard(BOARD);
  const { run } = await board.startRun();
  assert.equal((await board.submit(0, { name: "Unlucky", run })).status, 200);
  assert.ok(lost);
  // Its entry, in whichever of this gateway's two-second seasons it landed.
  const { leaderboards } = await client.account();
  assert.ok(leaderboards.some((entry) => entry.value === `Unlucky-${id}`));
});

test("the account holds the saves, entries and recovery; erasing it ends them", { skip: NO_ACCOUNT }, async () => {
  const { client, id } = await newPlayer();
  await client.players.save({ id, name: "Leaving" });
  await client.leaderboard(BOARD).submit(3, { name: "Leaving" });
  const code = await client.issueRecoveryCode();
  const account = await client.account();
  assert.equal(account.id, id);
  assert.equal(account.saves.player.name, "Leaving");
  assert.equal(account.saves.game, null);
  assert.ok(
    account.leaderboards.some((entry) => entry.key === BOARD && entry.value === `Leaving-${id}` && entry.score === 3),
  );
  assert.deepEqual(account.recovery, { active: true });

  await client.deleteAccount();
  const recovered = await (await newPlayer()).client.recover(code).catch((error) => error);
  assert.ok(recovered instanceof ApiError && recovered.status === 403);
  const after = await (await newPlayer()).client.leaderboard(BOARD).page({ count: 100 });
  assert.ok(!after.some((entry) => entry.value.endsWith(id)));
  assert.notEqual(await client.sessionId(), id, "the next call starts a new session");
});
