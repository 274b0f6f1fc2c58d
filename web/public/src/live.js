// Live tops: while a screen shows a board, an EventSource on the board's live stream
// (GET /api/leaderboard/{key}/live) hands it each new top 10. The server sends the whole top at once
// on every (re)connect, and the browser reconnects by itself after a dropped connection.
import { leaderboardKey } from "./state.js";

/** Calls `onTop(entries)` (the list shape, `[{value, score, rank}]`) with `map`'s top 10 each time it
 * changes, until the function it returns is called. */
export function followTop(map, onTop) {
  const source = new EventSource(`/api/leaderboard/${leaderboardKey(map)}/live`);
  source.addEventListener("top", (event) => onTop(JSON.parse(event.data)));
  return () => source.close();
}
