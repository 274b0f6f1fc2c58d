// Leaderboards: a page of each survivor map's board beside the player's rank and neighbours, and the
// season with the time left; the first page follows the board live. Left/Right switch maps, Down/Up
// page through, Esc or Enter goes back.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, config, resetLive, survivorMaps } from "../state.js";
import { client } from "../client.js";
import { PAGE, loadRanking, addRankingPanel, addAroundPanel, rowOf, seasonLine } from "../ranking.js";
import { followTop } from "../live.js";
import { COLORS, LEFT_KEYS, RIGHT_KEYS, UP_KEYS, DOWN_KEYS, addLabel, onKeys } from "../ui.js";

export function registerLeaderboardScene() {
  k.scene("leaderboard", ({ map = survivorMaps()[0], offset = 0 } = {}) => {
    resetLive("leaderboard");
    const root = k.add([k.pos(0, 0), k.fixed(), k.timer()]);
    addLabel(root, `<  ${map}  >`, k.vec2(WIDTH / 2, 18), { size: 20, color: COLORS.gold });
    addLabel(root, "Left/Right: map   Up/Down: page   Esc: back", k.vec2(WIDTH / 2, HEIGHT - 10), {
      size: 12,
      color: COLORS.muted,
    });
    const loading = addLabel(root, "Loading...", k.vec2(WIDTH / 2, HEIGHT / 2));
    const topPos = k.vec2(200, HEIGHT / 2 + 4);
    const aroundPos = k.vec2(WIDTH - 128, HEIGHT / 2 + 4);
    const view = { ranking: null, top: null, season: null };

    const drawTop = () => {
      view.top?.destroy();
      view.top = addRankingPanel({ ranking: view.ranking, pos: topPos });
    };

    /**
     * Redraws the first page from entries in the server's list shape (`[{value, score, rank}]`):
     * live updates (the `top` event of GET .../live) call this with each new top 10.
     */
    const renderTop = (entries) => {
      if (!root.exists() || !view.ranking || offset !== 0) return;
      view.ranking.entries = entries.map(rowOf);
      drawTop();
    };
    if (offset === 0) root.onDestroy(followTop(map, renderTop));

    const show = (ranking) => {
      if (!root.exists()) return; // the player already left this scene
      loading.destroy();
      view.ranking = ranking;
      drawTop();
      view.season = addAroundPanel({ ranking, pos: aroundPos }).seasonLabel;
    };
    loadRanking(map, { offset }).then(
      (ranking) => show(ranking),
      (error) => {
        if (!root.exists()) return;
        loading.destroy();
        addRankingPanel({ message: `Leaderboard unavailable: ${error.message}`, pos: topPos });
      },
    );

    // The time left in the season, each second; when it ends, the new season's board.
    root.loop(1, async () => {
      if (!view.season?.exists()) return;
      view.season.text = seasonLine();
      if (config.season.endsAt !== null && Date.now() >= config.season.endsAt) {
        Object.assign(config, await client.config());
        if (root.exists()) k.go("leaderboard", { map });
      }
    });

    const switchMap = (step) => {
      const maps = survivorMaps();
      const index = (maps.indexOf(map) + step + maps.length) % maps.length;
      k.go("leaderboard", { map: maps[index] });
    };
    const turnPage = (step) => {
      const full = view.ranking && view.ranking.entries.length === PAGE;
      if ((step > 0 && full) || (step < 0 && offset > 0)) k.go("leaderboard", { map, offset: offset + step * PAGE });
    };
    onKeys(root, LEFT_KEYS, () => switchMap(-1));
    onKeys(root, RIGHT_KEYS, () => switchMap(1));
    onKeys(root, DOWN_KEYS, () => turnPage(1));
    onKeys(root, UP_KEYS, () => turnPage(-1));
    onKeys(root, ["escape", "enter"], () => k.go("menu"));
    Object.assign(state.live, { renderTop });
  });
}
