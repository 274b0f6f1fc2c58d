// Main menu: Continue (when a save exists), New game, Survivor (needs a hero), Leaderboards.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, resetLive, survivorMaps } from "../state.js";
import { COLORS, addMenu, addLabel, plainText } from "../ui.js";
import { ensureSession } from "../session.js";

const CONTROLS = "Arrows/WASD move   Space sword   Enter talk/choose   Esc pause";

function mainOptions(openSurvivorMaps) {
  const hasSave = state.player !== null;
  return [
    hasSave && { label: "Continue", action: () => k.go("quest") },
    { label: "New game", action: () => k.go("newgame") },
    hasSave && { label: "Survivor", action: openSurvivorMaps },
    { label: "Leaderboards", action: () => k.go("leaderboard") },
  ].filter(Boolean);
}

export function registerMenuScene() {
  k.scene("menu", () => {
    resetLive("menu");
    const root = k.add([k.pos(0, 0), k.fixed()]);
    addLabel(root, "CACHE QUEST", k.vec2(WIDTH / 2, 44), { size: 36, color: COLORS.gold });
    const greeting = addLabel(root, "Connecting...", k.vec2(WIDTH / 2, 86), { size: 16 });
    addLabel(root, CONTROLS, k.vec2(WIDTH / 2, HEIGHT - 20), { size: 12, color: COLORS.muted });
    let menu = null;

    const showMain = () => {
      menu?.destroy();
      greeting.text = state.player ? `Welcome back, ${plainText(state.player.name)}!` : "A new Cache Keeper arrives.";
      menu = addMenu({ options: mainOptions(showSurvivorMaps) });
    };
    const showSurvivorMaps = () => {
      menu.destroy();
      const options = survivorMaps().map((map) => ({
        label: `${map}  (best ${state.player.bestScore[map] ?? 0})`,
        action: () => k.go("survivor", { map }),
      }));
      menu = addMenu({ title: "Survivor: pick a map", options, onBack: showMain, width: 320 });
    };
    const showFailure = (error) => {
      greeting.text = `Could not reach the server (${error.message}).`;
      menu = addMenu({ options: [{ label: "Try again", action: () => k.go("menu") }] });
    };

    ensureSession().then(showMain, showFailure);
  });
}
