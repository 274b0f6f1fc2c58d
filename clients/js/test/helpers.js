// What every test file shares: the gateways under test (started by tests/test_js_client.py) and a
// new player on each.
import { CacheQuestClient } from "../src/index.js";

export const GATEWAY = process.env.CACHE_QUEST_URL;
// A gateway with seasons of 2 s and a write limit of 1 a second per player.
export const LIMITED = process.env.CACHE_QUEST_LIMITED_URL;
if (!GATEWAY || !LIMITED)
  throw new Error("set CACHE_QUEST_URL and CACHE_QUEST_LIMITED_URL (tests/test_js_client.py does)");

export const BOARD = "leaderboards:survivor-Scores";

/** A client with a session of its own, as a new player's browser would be. */
export async function newPlayer(baseUrl = GATEWAY, options = {}) {
  const client = new CacheQuestClient({ baseUrl, ...options });
  const { id } = await client.session();
  return { client, id };
}

/** Why a test of a route the gateway does not have yet is skipped, or false when it has it. */
export async function unlessRoute(baseUrl, method, path) {
  const schema = await (await fetch(`${baseUrl}/openapi.json`)).json();
  return schema.paths[path]?.[method] ? false : `the gateway has no ${method.toUpperCase()} ${path} yet (issue 29)`;
}

/**
 * A fetch that answers `status` (with Retry-After: 1; 0 is a network error) to the first `times`
 * calls of `method` (any without one), and asks the server otherwise.
 */
export function failingFirst(times, status, method) {
  const calls = [];
  let failed = 0;
  const fetcher = async (url, init) => {
    calls.push(init.method);
    if (failed === times || (method && init.method !== method)) return fetch(url, init);
    failed += 1;
    if (status === 0) throw new TypeError("fetch failed");
    const body = JSON.stringify({ status, message: "injected by the test" });
    return new Response(body, { status, headers: { "Retry-After": "1", "Content-Type": "application/json" } });
  };
  return { fetcher, calls };
}
