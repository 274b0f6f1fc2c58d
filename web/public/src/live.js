// Live tops: while a screen shows a board, an EventSource on the board's live stream
// (GET /api/leaderboard/{key}/live) redraws it with each new top 10. The server sends the whole top
// at once on every (re)connect, and the browser reconnects by itself after a dropped connection.
import { state, leaderboardKey, displayName } from "./state.js";
import { loadRanking } from "./ranking.js";

const WAIT_FOR_PANEL_MS = 100;

/** The ranking on screen with `top` ({value, score, rank} entries) in place of its entries. Pushed out
 * of the top, the player's rank is asked for again; outside it, it is kept as the screen showed it. */
async function withTop(shown, top, ownMember) {
  const own = top.find((entry) => entry.value === ownMember);
  if (!own && shown.ownRank !== null && shown.ownRank <= top.length) return loadRanking(shown.map, ownMember);
  return {
    ...shown,
    entries: top.map((entry) => ({
      rank: entry.rank,
      name: displayName(entry.value),
      score: Math.round(entry.score),
      own: entry.value === ownMember,
    })),
    ownRank: own ? own.rank : shown.ownRank,
  };
}

/** Calls `show(ranking)` with `map`'s board each time its top 10 changes, until the function it
 * returns is called. A top that comes before the screen shows the board waits for it. */
export function followTop(map, ownMember, show) {
  const source = new EventSource(`/api/leaderboard/${leaderboardKey(map)}/live`);
  let latest = null;
  let timer = null;
  const apply = async () => {
    timer = null;
    const shown = state.live.leaderboard;
    if (!shown || shown.map !== map) {
      timer = setTimeout(apply, WAIT_FOR_PANEL_MS);
      return;
    }
    const top = latest;
    const ranking = await withTop(shown, top, ownMember).catch(() => null);
    if (ranking && top === latest && source.readyState !== EventSource.CLOSED) show(ranking);
  };
  source.addEventListener("top", (event) => {
    latest = JSON.parse(event.data);
    if (timer === null) apply();
  });
  return () => {
    source.close();
    clearTimeout(timer);
  };
}
