// Leaderboards: the top 10 of each survivor map; Left/Right switch maps, Esc or Enter goes back.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, resetLive, leaderboardMember, survivorMaps } from "../state.js";
import { loadRanking, addRankingPanel } from "../ranking.js";
import { followTop } from "../live.js";
import { COLORS, LEFT_KEYS, RIGHT_KEYS, addLabel, onKeys } from "../ui.js";

export function registerLeaderboardScene() {
  k.scene("leaderboard", ({ map = survivorMaps()[0] } = {}) => {
    resetLive("leaderboard");
    const root = k.add([k.pos(0, 0), k.fixed()]);
    addLabel(root, `<  ${map}  >`, k.vec2(WIDTH / 2, 22), { size: 20, color: COLORS.gold });
    addLabel(root, "Left/Right: change map   Esc: back", k.vec2(WIDTH / 2, HEIGHT - 12), {
      size: 12,
      color: COLORS.muted,
    });
    const loading = addLabel(root, "Loading...", k.vec2(WIDTH / 2, HEIGHT / 2));
    const panelPos = k.vec2(WIDTH / 2, HEIGHT / 2 + 6);
    const ownMember = state.player ? leaderboardMember() : null;

    let panel = null;
    const show = (options) => {
      if (!root.exists()) return; // the player already left this scene
      loading.destroy();
      panel?.destroy();
      panel = addRankingPanel({ ...options, pos: panelPos });
    };
    loadRanking(map, ownMember).then(
      (ranking) => show({ ranking }),
      (error) => show({ message: `Leaderboard unavailable: ${error.message}` }),
    );
    root.onDestroy(followTop(map, ownMember, (ranking) => show({ ranking })));

    const switchMap = (step) => {
      const maps = survivorMaps();
      const index = (maps.indexOf(map) + step + maps.length) % maps.length;
      k.go("leaderboard", { map: maps[index] });
    };
    onKeys(root, LEFT_KEYS, () => switchMap(-1));
    onKeys(root, RIGHT_KEYS, () => switchMap(1));
    onKeys(root, ["escape", "enter"], () => k.go("menu"));
  });
}
