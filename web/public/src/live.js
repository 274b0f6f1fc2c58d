// Live tops: while a screen shows a board, the client follows the board's live stream
// (GET /api/leaderboard/{key}/live) and hands it each new top 10. The server sends the whole top at
// once on every (re)connect, and the client reconnects by itself after a dropped connection.
import { client, KEEP_TRYING } from "./client.js";
import { leaderboardKey } from "./state.js";

/** Calls `onTop(entries)` (the list shape, `[{value, score, rank}]`) with `map`'s top 10 each time it
 * changes, until the function it returns is called. */
export function followTop(map, onTop) {
  const stop = new AbortController();
  const follow = async () => {
    for await (const top of client.leaderboard(leaderboardKey(map)).live({ signal: stop.signal, ...KEEP_TRYING })) {
      onTop(top);
    }
  };
  // Refused for good (an unknown board): the screen keeps the page it loaded.
  follow().catch((error) => console.warn(`live top of ${map}: ${error.message}`));
  return () => stop.abort();
}
