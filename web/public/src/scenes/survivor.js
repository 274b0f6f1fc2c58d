// Survivor mode: ever-larger waves until the hero falls; the score goes to the map's leaderboard.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, resetLive, leaderboardKey, leaderboardMember } from "../state.js";
import { postScore, startRun } from "../api.js";
import { savePlayer } from "../saves.js";
import { buildMap, followWithCamera, randomFreeSpot, SPAWN } from "../world.js";
import { addHero } from "../entities/hero.js";
import { addEnemy, ENEMY_KINDS } from "../entities/enemies.js";
import { addHud } from "../hud.js";
import { installPauseMenu } from "../pause.js";
import { loadRanking, addRankingPanel } from "../ranking.js";
import { COLORS, addMenu, addPanel, addLabel, showBanner, addSaveIndicator } from "../ui.js";

const MAP_ENEMY = { Grassland: "slime", Mountains: "bat", Badlands: "scorpion" };
const WAVE_SECONDS = 25; // the next wave comes when this one is cleared or this much time passed
const MAX_ALIVE = 45; // keeps the frame rate steady on slow machines
const POINTS_PER_SECOND = 2;

function waveSize(wave) {
  return 4 + 3 * (wave - 1);
}

/** The map's own enemy first; from wave 3 on, the other kinds join in. */
function waveKind(map, wave, index) {
  const kinds = Object.keys(ENEMY_KINDS);
  return wave >= 3 && index % 3 === 2 ? kinds[(index + wave) % kinds.length] : MAP_ENEMY[map];
}

export function registerSurvivorScene() {
  k.scene("survivor", ({ map }) => {
    resetLive("survivor");
    const { player } = state;
    const world = k.add([k.pos(0, 0)]);
    buildMap(world, map);
    const hero = addHero(world, { pos: SPAWN, player, hp: player.stats.maxHp, onDeath: () => endRun() });
    addSaveIndicator();
    followWithCamera(hero);
    const run = { map, score: 0, wave: 0, kills: 0, seconds: 0, killPoints: 0, alive: true, result: null };
    // A verified run, on the server's clock, from the round's first frame: the score goes with it.
    const verifiedRun = startRun(leaderboardKey(map));
    let waveClock = 0;
    addHud(() => ({
      lines: [
        `Survivor: ${map}   Wave ${run.wave}`,
        `Score ${run.score}   Best ${Math.max(player.bestScore[map] ?? 0, run.score)}`,
      ],
      hp: hero.hp,
      maxHp: player.stats.maxHp,
    }));

    function startWave() {
      run.wave += 1;
      waveClock = 0;
      showBanner(`Wave ${run.wave}`, 1.5);
      const toughness = 1 + (run.wave - 1) * 0.25;
      const room = MAX_ALIVE - world.get("enemy").length;
      for (let index = 0; index < Math.min(waveSize(run.wave), room); index++) {
        addEnemy(world, {
          kind: waveKind(map, run.wave, index),
          pos: randomFreeSpot(map, hero.pos, 240),
          target: hero,
          toughness,
          aggroRange: 2000, // survivors are always hunted
          onDefeat: (enemy) => {
            run.kills += 1;
            run.killPoints += ENEMY_KINDS[enemy.kind].points * run.wave;
            player.killCount[enemy.kind] = (player.killCount[enemy.kind] ?? 0) + 1;
          },
        });
      }
    }

    world.onUpdate(() => {
      if (run.alive) {
        run.seconds += k.dt();
        waveClock += k.dt();
        run.score = run.killPoints + Math.floor(run.seconds * POINTS_PER_SECOND);
        if (world.get("enemy").length === 0 || waveClock > WAVE_SECONDS) startWave();
      }
    });

    /** Death: record a personal best, save, post it, then show the board with the player's rank. */
    function endRun() {
      if (!run.alive) return;
      run.alive = false;
      hero.hp = 0;
      hero.opacity = 0.4;
      world.paused = true;
      const previousBest = player.bestScore[map] ?? 0;
      const isPersonalBest = run.score > previousBest;
      if (isPersonalBest) player.bestScore[map] = run.score;
      savePlayer();
      run.result = { isPersonalBest, posted: false };
      showGameOver(isPersonalBest);
    }

    function showGameOver(isPersonalBest) {
      k.add([k.rect(WIDTH, HEIGHT), k.color(COLORS.ink), k.opacity(0.5), k.fixed(), k.z(140)]);
      const info = addPanel(230, 150, k.vec2(125, 110), 150);
      addLabel(info, "GAME OVER", k.vec2(0, -50), { size: 24, color: COLORS.danger });
      addLabel(info, `Score ${run.score}`, k.vec2(0, -18), { size: 18 });
      addLabel(info, `Wave ${run.wave}, ${run.kills} defeated`, k.vec2(0, 6), { size: 12, color: COLORS.muted });
      const verdict = isPersonalBest ? "New personal best!" : `Best ${player.bestScore[map]}`;
      addLabel(info, verdict, k.vec2(0, 30), { size: 14, color: isPersonalBest ? COLORS.gold : COLORS.paper });
      addMenu({
        pos: k.vec2(125, 250),
        width: 230,
        options: [
          { label: "Play again", action: () => k.go("survivor", { map }) },
          { label: "Main menu", action: () => k.go("menu") },
        ],
      });
      const status = addLabel(k.add([k.fixed(), k.pos(0, 0), k.z(160)]), "Loading leaderboard...", k.vec2(435, 180), {
        size: 14,
      });
      publishAndShowBoard(isPersonalBest, status);
    }

    async function publishAndShowBoard(isPersonalBest, status) {
      const boardPos = k.vec2(435, 180);
      const show = (options) => {
        if (!status.exists()) return; // the player already left
        status.destroy();
        addRankingPanel({ ...options, pos: boardPos });
      };
      try {
        if (isPersonalBest) {
          status.text = "Posting your score...";
          await postScore(leaderboardKey(map), run.score, leaderboardMember(), {
            run: await verifiedRun,
            onRetry: () => status.exists() && (status.text = "Score post failed, retrying..."),
          });
          run.result.posted = true;
        }
        show({ ranking: await loadRanking(map) });
      } catch (error) {
        show({ message: `Leaderboard unavailable: ${error.message}` });
      }
    }

    installPauseMenu({ world, canPause: () => run.alive, quitLabel: "Quit run", onQuit: () => k.go("menu") });

    Object.assign(state.live, { map, hero, survivor: run, endRun });
  });
}
