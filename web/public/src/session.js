// Loads the server's rules, the session id and any existing save once per page; the menu waits on it.
import { client } from "./client.js";
import { loadDocument } from "./saves.js";
import { state, config, newPlayerDoc, newGameDoc, withDefaults } from "./state.js";
import { MAP_NAMES, SPAWN } from "./world.js";

let loading = null;

async function loadSession() {
  const [rules, session] = await Promise.all([client.config(), client.session()]);
  Object.assign(config, rules);
  state.sessionId = session.id;
  const [player, game] = await Promise.all([
    loadDocument("player", state.sessionId),
    loadDocument("game", state.sessionId),
  ]);
  if (!player) return;
  state.player = withDefaults(player, newPlayerDoc(state.sessionId, player.name));
  if (!MAP_NAMES.includes(state.player.currentMap)) {
    // A map this version does not know (renamed or hand-edited): start over at the first one.
    state.player.currentMap = MAP_NAMES[0];
    state.player.position = { ...SPAWN };
  }
  // A player saved without its game document (a save that never landed) restarts the story.
  state.game = withDefaults(game ?? {}, newGameDoc(state.sessionId));
}

/** Resolves once the session and saves are known. A failure can be retried by calling again. */
export function ensureSession() {
  loading ??= loadSession().catch((error) => {
    loading = null;
    throw error;
  });
  return loading;
}

/** Forgets the session and saves, so the next ensureSession() loads them anew (after a recovery). */
export function forgetSession() {
  loading = null;
  Object.assign(state, { sessionId: null, player: null, game: null });
}
