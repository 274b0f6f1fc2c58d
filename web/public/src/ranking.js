// Leaderboard data and its panels, shared by the Leaderboards scene and the survivor game-over screen.
import { k } from "./engine.js";
import { client } from "./client.js";
import { state, config, leaderboardKey, displayName, isOwnMember } from "./state.js";
import { COLORS, addPanel, addLabel, plainText } from "./ui.js";

export const PAGE = 10;
const AROUND = 2; // neighbours shown above and below the player

/** A row as the panels draw it, from an entry in the server's list shape `{value, score, rank}`. */
export const rowOf = (entry) => ({
  rank: entry.rank,
  name: displayName(entry.value),
  score: Math.round(entry.score),
  own: isOwnMember(entry.value),
});

/**
 * { map, offset, entries, ownRank, around } for a page of a map's board: `entries` from rank
 * `offset + 1`, and the player's own rank and neighbours (GET .../me), each as rows (rowOf).
 */
export async function loadRanking(map, { offset = 0 } = {}) {
  const board = client.leaderboard(leaderboardKey(map));
  const [page, mine] = await Promise.all([
    board.page({ count: PAGE, offset }),
    // No entry (null), or no session any more (401): no place to show.
    state.sessionId
      ? board.me({ around: AROUND }).catch((error) => (error.status === 401 ? null : Promise.reject(error)))
      : null,
  ]);
  return {
    map,
    offset,
    entries: page.map(rowOf),
    ownRank: mine?.rank ?? null,
    around: mine ? mine.around.map(rowOf) : [],
  };
}

/** "3d 4h", "4h 12m", "12m 5s", "5s": what is left of a duration, to the two largest units. */
export function formatRemaining(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const units = [
    ["d", Math.floor(seconds / 86400)],
    ["h", Math.floor(seconds / 3600) % 24],
    ["m", Math.floor(seconds / 60) % 60],
    ["s", seconds % 60],
  ];
  const first = Math.max(0, units.findIndex(([, value]) => value > 0));
  return units
    .slice(first, first + 2)
    .map(([unit, value]) => `${value}${unit}`)
    .join(" ");
}

/** The season the boards show and when it ends (GET /api/config), or that they are all-time. */
export function seasonLine(now = Date.now()) {
  const { mode, current, endsAt } = config.season;
  if (mode === "none" || !current) return "All-time board";
  return `Season ${current}, ends in ${formatRemaining(endsAt - now)}`;
}

const formatRow = ({ rank, name, score, own }, nameWidth) =>
  `${String(rank).padStart(4)}. ${plainText(name.slice(0, nameWidth).padEnd(nameWidth))} ` +
  `${String(score).padStart(7)}${own ? " < you" : ""}`;

function ownRankLine(ranking) {
  if (ranking.ownRank) return `Your rank: #${ranking.ownRank}`;
  return state.player ? "You are not on this board yet" : "Start a game to join the board";
}

/** Rows from the top of a panel's content area; returns the labels, so a caller can redraw them. */
export function addRows(panel, rows, { left, top, size = 14, nameWidth = 12 }) {
  return rows.map((row, index) =>
    addLabel(panel, formatRow(row, nameWidth), k.vec2(left, top + index * (size + 6)), {
      size,
      anchor: "topleft",
      color: row.own ? COLORS.gold : COLORS.paper,
    }),
  );
}

/** Draws a ranking (or a message instead of one) in a panel; records what it shows for tests. */
export function addRankingPanel({ ranking, message, pos, width = 380, height = 300 }) {
  const panel = addPanel(width, height, pos, 150);
  const left = -width / 2 + 14;
  const first = ranking ? ranking.offset + 1 : 1;
  const title = ranking ? `${ranking.map} - #${first} to #${first + PAGE - 1}` : "Leaderboard";
  addLabel(panel, title, k.vec2(0, -height / 2 + 20), { color: COLORS.gold });
  if (!ranking) {
    addLabel(panel, message, k.vec2(0, 0), { size: 14, width: width - 40 });
    return panel;
  }
  const empty = ranking.offset === 0 ? "No scores yet. Be the first!" : "No one this far down yet.";
  if (ranking.entries.length === 0) addLabel(panel, empty, k.vec2(0, -40), { size: 14 });
  addRows(panel, ranking.entries, { left, top: -height / 2 + 46 });
  addLabel(panel, ownRankLine(ranking), k.vec2(0, height / 2 - 22), { size: 14, color: COLORS.good });
  state.live.leaderboard = ranking;
  return panel;
}

/** The player's neighbours on the board (GET .../me), with the season and when it ends. */
export function addAroundPanel({ ranking, pos, width = 236, height = 300 }) {
  const panel = addPanel(width, height, pos, 150);
  const season = seasonLine();
  addLabel(panel, "Near you", k.vec2(0, -height / 2 + 20), { color: COLORS.gold });
  const seasonLabel = addLabel(panel, season, k.vec2(0, -height / 2 + 46), {
    size: 12,
    color: COLORS.muted,
    width: width - 20,
  });
  if (ranking.around.length === 0) {
    addLabel(panel, ownRankLine(ranking), k.vec2(0, 0), { size: 12, width: width - 30 });
  } else {
    addRows(panel, ranking.around, { left: -width / 2 + 8, top: -height / 2 + 80, size: 12, nameWidth: 8 });
  }
  Object.assign(state.live.leaderboard ?? {}, { season: { ...config.season, line: season } });
  return { panel, seasonLabel };
}
