// Test-only API for the browser tests; installed only when the page is opened with ?test=1.
//
//   window.__cacheQuest.snapshot()   -> plain JSON copy of what the game shows and remembers:
//       { scene, sessionId, player, game, save: { phase, detail }, allSaved,
//         menu: { title, options, selected } | null, dialogue: { speaker, line } | null,
//         nameEntry: { name } | null, map, hero: { x, y, hp } | null,
//         survivor: { map, score, wave, alive, result } | null,
//         leaderboard: { map, offset, entries: [{ rank, name, score, own }], ownRank,
//                        around: [rows as entries], season: { mode, current, endsAt, line } } | null,
//         recovery: { code, error } | null (the pause's "Play on another device"),
//         codeEntry: { code, message } | null (the title's "I have a code"),
//         account: { exported } | null (the pause's "Download my data": what was downloaded),
//         keys: the last key presses the page received: [{ key, toCanvas, frame }] }
//   window.__cacheQuest.teleport(x, y, map?)  quest scene only: moves the hero; with another map
//       name it travels there through the normal map change (which saves).
//   window.__cacheQuest.endSurvivorRun()  survivor scene only: the hero falls now, and the usual
//       death path runs (personal best, save, score post, leaderboard).
import { k } from "./engine.js";
import { state } from "./state.js";
import { saveStatus, allSaved } from "./saves.js";

function requireLive(name) {
  const action = state.live[name];
  if (!action) throw new Error(`${name} is not available in the "${k.getSceneName()}" scene`);
  return action;
}

/** Key presses as the page received them, for a test's failure message: did the key reach the game? */
const keysSeen = [];

function recordKeys() {
  const record = (event) => {
    keysSeen.push({ key: event.key, toCanvas: event.target === k.canvas, frame: k.debug.numFrames() });
    if (keysSeen.length > 8) keysSeen.shift();
  };
  window.addEventListener("keydown", record, { capture: true });
}

export function installTestHook() {
  recordKeys();
  window.__cacheQuest = {
    snapshot() {
      const { live } = state;
      const hero = live.hero ? { x: live.hero.pos.x, y: live.hero.pos.y, hp: live.hero.hp } : null;
      return structuredClone({
        scene: k.getSceneName(),
        sessionId: state.sessionId,
        player: state.player,
        game: state.game,
        save: { ...saveStatus },
        allSaved: allSaved(),
        menu: live.menu ?? null,
        dialogue: live.dialogue ?? null,
        nameEntry: live.nameEntry ?? null,
        map: live.map ?? null,
        hero,
        survivor: live.survivor ?? null,
        leaderboard: live.leaderboard ?? null,
        recovery: live.recovery ?? null,
        codeEntry: live.codeEntry ?? null,
        account: live.account ?? null,
        keys: keysSeen,
      });
    },
    teleport: (x, y, map) => requireLive("teleport")(x, y, map),
    endSurvivorRun: () => requireLive("endRun")(),
  };
}
