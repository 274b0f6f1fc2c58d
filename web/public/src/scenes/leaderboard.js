// Leaderboards: the top 10 of each survivor map; Left/Right switch maps, Esc or Enter goes back.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, resetLive, leaderboardMember } from "../state.js";
import { MAP_NAMES } from "../world.js";
import { loadRanking, addRankingPanel } from "../ranking.js";
import { COLORS, LEFT_KEYS, RIGHT_KEYS, addLabel, onKeys } from "../ui.js";

export function registerLeaderboardScene() {
  k.scene("leaderboard", ({ map = MAP_NAMES[0] } = {}) => {
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

    const show = (options) => {
      if (!root.exists()) return; // the player already left this scene
      loading.destroy();
      addRankingPanel({ ...options, pos: panelPos });
    };
    loadRanking(map, ownMember).then(
      (ranking) => show({ ranking }),
      (error) => show({ message: `Leaderboard unavailable: ${error.message}` }),
    );

    const switchMap = (step) => {
      const index = (MAP_NAMES.indexOf(map) + step + MAP_NAMES.length) % MAP_NAMES.length;
      k.go("leaderboard", { map: MAP_NAMES[index] });
    };
    onKeys(root, LEFT_KEYS, () => switchMap(-1));
    onKeys(root, RIGHT_KEYS, () => switchMap(1));
    onKeys(root, ["escape", "enter"], () => k.go("menu"));
  });
}
