// What the game remembers: the session, the two save documents, and what the current scene shows.
import { MAP_NAMES, SPAWN } from "./world.js";

/** The server's rules (GET /api/config), loaded with the session: maps, board keys, the name rule, the season. */
export const config = {
  maps: [],
  leaderboards: {},
  name: { pattern: "^$", maxLength: 0, description: "" },
  season: { mode: "none", current: null, endsAt: null },
};

export const nameIsValid = (name) => new RegExp(config.name.pattern).test(name);
/** The survivor maps: those the server has a board for and this game can draw. */
export const survivorMaps = () => config.maps.filter((map) => MAP_NAMES.includes(map));

/** Shared mutable state. `player` and `game` mirror players:{id} and games:{id} in Redis. */
export const state = {
  sessionId: null,
  player: null,
  game: null,
  /** Whatever the current scene exposes for the test hook; reset on every scene change. */
  live: {},
};

const now = () => new Date().toISOString();

export function newPlayerDoc(id, name) {
  return {
    id,
    name,
    stats: { level: 1, xp: 0, maxHp: 10, hp: 10, attack: 1, speed: 150 },
    currentMap: MAP_NAMES[0],
    position: { x: SPAWN.x, y: SPAWN.y },
    skillUnlocked: { swordBeam: false, dash: false, whirlwind: false },
    killCount: { slime: 0, bat: 0, scorpion: 0, boss: 0 },
    bestScore: Object.fromEntries(MAP_NAMES.map((map) => [map, 0])),
    createdAt: now(),
    updatedAt: now(),
  };
}

export function newGameDoc(id) {
  return {
    id,
    chapter: 1,
    subChapter: 1,
    bossDefeated: { chapter1: false, chapter2: false, chapter3: false },
    completed: false,
    updatedAt: now(),
  };
}

/** Fills fields missing from a loaded document (older saves) with the defaults, recursively. */
export function withDefaults(loaded, defaults) {
  const merged = { ...defaults };
  for (const [key, value] of Object.entries(loaded ?? {})) {
    const bothObjects = isPlainObject(value) && isPlainObject(defaults[key]);
    merged[key] = bothObjects ? withDefaults(value, defaults[key]) : value;
  }
  return merged;
}

const isPlainObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

export const leaderboardKey = (map) => config.leaderboards[map];
export const leaderboardMember = () => `${state.player.name}-${state.sessionId}`;
/** A member is "{name}-{session id}"; the display name is what comes before the first "-". */
export const displayName = (member) => member.split("-")[0];
/** Whether a board member is this session's, whatever name it was posted under. */
export const isOwnMember = (member) => state.sessionId !== null && member.endsWith(`-${state.sessionId}`);

export function touch(doc) {
  doc.updatedAt = now();
}

export function resetLive(sceneName) {
  state.live = { scene: sceneName };
}
