// Leaderboard data and its panel, shared by the Leaderboards scene and the survivor game-over screen.
import { k } from "./engine.js";
import { fetchLeaderboard } from "./api.js";
import { state, leaderboardKey, displayName } from "./state.js";
import { COLORS, addPanel, addLabel, plainText } from "./ui.js";

const TOP = 10;
const RANK_SEARCH = 100; // how far down to look for the player's rank when outside the top 10

/** { map, entries: [{ rank, name, score, own }], ownRank } for a map's board. */
export async function loadRanking(map, ownMember) {
  const key = leaderboardKey(map);
  const top = await fetchLeaderboard(key, TOP);
  let ownIndex = top.findIndex((entry) => entry.value === ownMember);
  if (ownIndex === -1 && ownMember) {
    const wider = await fetchLeaderboard(key, RANK_SEARCH).catch(() => []);
    ownIndex = wider.findIndex((entry) => entry.value === ownMember);
  }
  return {
    map,
    entries: top.map((entry, index) => ({
      rank: index + 1,
      name: displayName(entry.value),
      score: Math.round(entry.score),
      own: entry.value === ownMember,
    })),
    ownRank: ownIndex >= 0 ? ownIndex + 1 : null,
  };
}

const formatRow = ({ rank, name, score, own }) =>
  `${String(rank).padStart(2)}. ${plainText(name.padEnd(12))} ${String(score).padStart(7)}${own ? "  < you" : ""}`;

function ownRankLine(ranking) {
  if (ranking.ownRank) return `Your rank: #${ranking.ownRank}`;
  return state.player ? "You are not on this board yet" : "Start a game to join the board";
}

/** Draws a ranking (or a message instead of one) in a panel; records what it shows for tests. */
export function addRankingPanel({ ranking, message, pos, width = 380, height = 300 }) {
  const panel = addPanel(width, height, pos, 150);
  const left = -width / 2 + 20;
  const title = ranking ? `${ranking.map} - top ${TOP}` : "Leaderboard";
  addLabel(panel, title, k.vec2(0, -height / 2 + 20), { color: COLORS.gold });
  if (!ranking) {
    addLabel(panel, message, k.vec2(0, 0), { size: 14, width: width - 40 });
    return panel;
  }
  if (ranking.entries.length === 0) addLabel(panel, "No scores yet. Be the first!", k.vec2(0, -40), { size: 14 });
  ranking.entries.forEach((entry, index) => {
    addLabel(panel, formatRow(entry), k.vec2(left, -height / 2 + 46 + index * 20), {
      size: 14,
      anchor: "topleft",
      color: entry.own ? COLORS.gold : COLORS.paper,
    });
  });
  addLabel(panel, ownRankLine(ranking), k.vec2(0, height / 2 - 22), { size: 14, color: COLORS.good });
  state.live.leaderboard = ranking;
  return panel;
}
