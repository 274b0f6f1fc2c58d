import assert from "node:assert/strict";
import { test } from "node:test";
import { CacheQuestClient } from "../src/index.js";
import { GATEWAY, newPlayer } from "./helpers.js";

const BOARD = "leaderboards:survivor-Mountains";

/** The gateway's open live streams, from its metrics. */
async function listeners() {
  const text = await (await fetch(`${GATEWAY}/metrics`)).text();
  return Number(/^cachequest_live_listeners(?:\{[^}]*\})? (\S+)$/m.exec(text)[1]);
}

async function eventually(check, what) {
  for (let tries = 0; tries < 100; tries++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`not within 10 s: ${what}`);
}

// A live stream that never sends what a test waits for fails it, rather than hanging the run.
const WAIT = { timeout: 30_000 };

test("the live top comes at once and again at each change; leaving the loop closes the stream", WAIT, async () => {
  const watcher = new CacheQuestClient({ baseUrl: GATEWAY });
  const { client, id } = await newPlayer();
  const tops = [];
  let score;
  for await (const top of watcher.leaderboard(BOARD).live()) {
    tops.push(top);
    if (tops.length === 1) {
      score = (top[0]?.score ?? 0) + 1; // the new leader
      await client.leaderboard(BOARD).submit(score, { name: "Climber" });
    }
    if (top[0]?.value === `Climber-${id}`) break;
  }
  assert.ok(tops.length >= 2);
  assert.deepEqual(tops.at(-1)[0], { value: `Climber-${id}`, score, rank: 1 });
  await eventually(async () => (await listeners()) === 0, "the stream closed");
});

test("the live top reconnects after the stream drops, and stops when its signal aborts", WAIT, async () => {
  let connections = 0;
  // Each stream is cut after its first chunk, as a proxy or a lost network would.
  const cutting = async (url, init) => {
    connections += 1;
    const response = await fetch(url, init);
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async start(controller) {
        const { value } = await reader.read();
        controller.enqueue(value);
        controller.error(new TypeError("terminated"));
        reader.cancel().catch(() => {});
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const watcher = new CacheQuestClient({ baseUrl: GATEWAY, fetch: cutting });
  const stop = new AbortController();
  const retries = [];
  const tops = [];
  for await (const top of watcher.leaderboard(BOARD).live({ signal: stop.signal, onRetry: (r) => retries.push(r) })) {
    tops.push(top);
    if (tops.length === 3) stop.abort();
  }
  assert.equal(tops.length, 3);
  assert.equal(connections, 3);
  assert.equal(retries.length, 2);
  assert.deepEqual(tops[1], tops[0], "each connection starts with the top as it is");
  await eventually(async () => (await listeners()) === 0, "the streams closed");
});

test("a live top of an unknown board is refused with the server's answer", async () => {
  const watcher = new CacheQuestClient({ baseUrl: GATEWAY });
  const iterator = watcher.leaderboard("leaderboards:nope").live();
  await assert.rejects(iterator.next(), { name: "ApiError", status: 400 });
});
