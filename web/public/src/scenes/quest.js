// Quest mode: one chapter per map. Talk to the guide, clear the pests, beat the boss, take the portal.
import { k } from "../engine.js";
import { state, resetLive } from "../state.js";
import { saveProgress, savePlayer } from "../saves.js";
import { CHAPTERS, SUB_CHAPTER, chapterForMap, chapterByNumber } from "../story.js";
import {
  buildMap,
  clampToWorld,
  followWithCamera,
  randomFreeSpot,
  SPAWN,
  NPC_SPOT,
  PORTAL_SPOT,
  TILE,
} from "../world.js";
import { addHero } from "../entities/hero.js";
import { addEnemy, ENEMY_KINDS } from "../entities/enemies.js";
import { addHud } from "../hud.js";
import { installPauseMenu } from "../pause.js";
import { COLORS, plainText, showDialogue, showBanner, addSaveIndicator } from "../ui.js";

const TALK_DISTANCE = 48;
const AUTOSAVE_SECONDS = 20;
const SPAWN_DISTANCE = 260;

/** "locked" (an earlier chapter is unfinished), "active" or "done". */
function chapterStatus(chapter) {
  if (state.game.bossDefeated[`chapter${chapter.number}`]) return "done";
  return chapter.number > state.game.chapter ? "locked" : "active";
}

/** The chapter's guide with a "!" above; returns a function that shows or hides the "!". */
function addGuide(world, chapter) {
  const guide = world.add([
    k.sprite("elder", { anim: "move" }),
    k.pos(NPC_SPOT.x, NPC_SPOT.y),
    k.anchor("center"),
    k.z(9),
  ]);
  guide.add([k.text(chapter.guide, { size: 10 }), k.pos(0, -26), k.anchor("center"), k.color(COLORS.paper)]);
  const marker = guide.add([k.text("!", { size: 18 }), k.pos(0, -42), k.anchor("center"), k.color(COLORS.gold)]);
  return (visible) => (marker.hidden = !visible);
}

function addPortal(world, onEnter, hero) {
  const portal = world.add([k.pos(PORTAL_SPOT.x, PORTAL_SPOT.y), k.z(4)]);
  const rings = [30, 22, 14].map((radius, index) =>
    portal.add([
      k.circle(radius),
      k.anchor("center"),
      k.color(index % 2 ? COLORS.paper : k.rgb(115, 239, 247)),
      k.opacity(0.8),
    ]),
  );
  let entered = false;
  portal.onUpdate(() => {
    rings.forEach((ring, index) => (ring.opacity = 0.5 + 0.4 * Math.sin(k.time() * 5 + index)));
    if (!entered && hero.pos.dist(portal.pos) < 26) {
      entered = true;
      onEnter();
    }
  });
  return portal;
}

export function registerQuestScene() {
  k.scene("quest", () => {
    resetLive("quest");
    const { player, game } = state;
    const mapName = player.currentMap;
    const chapter = chapterForMap(mapName);
    const status = chapterStatus(chapter);
    const world = k.add([k.pos(0, 0)]);
    buildMap(world, mapName);
    const hero = addHero(world, {
      pos: clampToWorld(player.position),
      player,
      hp: Math.max(1, Math.min(player.stats.hp, player.stats.maxHp)),
      onDeath: faint,
    });
    const showMarker = addGuide(world, chapter);
    const hud = addHud(() => ({
      lines: [`${plainText(player.name)}  Lv ${player.stats.level}`, chapter.title, objective()],
      hp: hero.hp,
      maxHp: player.stats.maxHp,
    }));
    addSaveIndicator();
    followWithCamera(hero);
    let dialogueOpen = false;
    let huntLeft = 0;

    function syncPlayer() {
      player.position = { x: Math.round(hero.pos.x), y: Math.round(hero.pos.y) };
      player.stats.hp = hero.hp;
    }

    function save() {
      syncPlayer();
      saveProgress();
    }

    function objective() {
      if (status === "locked") return `Finish chapter ${game.chapter} first (portal)`;
      if (status === "done" || game.subChapter === SUB_CHAPTER.PORTAL) return "Step into the portal";
      if (game.subChapter === SUB_CHAPTER.TALK) return `Talk to ${chapter.guide} (Enter)`;
      if (game.subChapter === SUB_CHAPTER.HUNT)
        return `Defeat ${huntLeft} more ${chapter.enemy}${huntLeft === 1 ? "" : "s"}`;
      return `Defeat ${chapter.boss.name}`;
    }

    function guideLines() {
      if (status === "locked") return [`These lands are not ready yet. Finish chapter ${game.chapter} first.`];
      if (status === "done") return chapter.lines.done;
      return [chapter.lines.talk, chapter.lines.hunt, chapter.lines.boss, chapter.lines.done][game.subChapter - 1];
    }

    function talk() {
      dialogueOpen = true;
      world.paused = true;
      showDialogue(chapter.guide, guideLines(), () => {
        dialogueOpen = false;
        world.paused = false;
        if (status === "active" && game.subChapter === SUB_CHAPTER.TALK) advanceTo(SUB_CHAPTER.HUNT);
      });
    }

    function advanceTo(subChapter) {
      game.subChapter = subChapter;
      save();
      startSubChapter(subChapter);
    }

    function recordKill(enemy) {
      const { killCount, stats } = player;
      killCount[enemy.kind] = (killCount[enemy.kind] ?? 0) + 1;
      stats.xp += ENEMY_KINDS[enemy.kind].xp * (enemy.boss ? 5 : 1);
      while (stats.xp >= stats.level * 50) {
        stats.xp -= stats.level * 50;
        stats.level += 1;
        stats.maxHp += 2;
        stats.attack += 1;
        hero.hp = stats.maxHp;
        showBanner(`Level up! Lv ${stats.level}`, 2, COLORS.good);
      }
    }

    function spawnHunt() {
      huntLeft = chapter.huntCount;
      for (let i = 0; i < chapter.huntCount; i++) {
        addEnemy(world, {
          kind: chapter.enemy,
          pos: randomFreeSpot(mapName, hero.pos, SPAWN_DISTANCE),
          target: hero,
          onDefeat: (enemy) => {
            recordKill(enemy);
            huntLeft -= 1;
            if (huntLeft === 0) {
              showBanner(`${chapter.boss.name} appears!`, 2.5, COLORS.danger);
              advanceTo(SUB_CHAPTER.BOSS);
            }
          },
        });
      }
    }

    function spawnBoss() {
      const boss = addEnemy(world, {
        kind: chapter.boss.kind,
        boss: chapter.boss,
        pos: randomFreeSpot(mapName, hero.pos, SPAWN_DISTANCE),
        target: hero,
        aggroRange: 400,
        onDefeat: (enemy) => {
          recordKill(enemy);
          player.killCount.boss = (player.killCount.boss ?? 0) + 1;
          game.bossDefeated[`chapter${chapter.number}`] = true;
          player.skillUnlocked[chapter.reward.skill] = true;
          hud.showBoss(null);
          showBanner(`${chapter.boss.name} defeated!\n${chapter.reward.text}`, 4);
          advanceTo(SUB_CHAPTER.PORTAL);
        },
      });
      hud.showBoss(boss);
    }

    function startSubChapter(subChapter) {
      showMarker(status !== "active" || subChapter === SUB_CHAPTER.TALK);
      if (subChapter === SUB_CHAPTER.HUNT) spawnHunt();
      if (subChapter === SUB_CHAPTER.BOSS) spawnBoss();
      if (subChapter === SUB_CHAPTER.PORTAL) addPortal(world, enterPortal, hero);
    }

    /** Map change: the new map and position are saved before the scene reloads. */
    function travel(map, position) {
      player.currentMap = map;
      player.position = { x: Math.round(position.x), y: Math.round(position.y) };
      player.stats.hp = hero.hp;
      saveProgress();
      k.go("quest");
    }

    function finishQuest() {
      game.completed = true;
      save();
      dialogueOpen = true;
      world.paused = true;
      showDialogue(
        chapter.guide,
        ["You restored every cache in the land. Thank you, Keeper!", "Try Survivor mode from the main menu."],
        () => k.go("menu"),
      );
    }

    function enterPortal() {
      if (status === "active" && chapter.number < CHAPTERS.length) {
        game.chapter = chapter.number + 1;
        game.subChapter = SUB_CHAPTER.TALK;
      }
      const next = chapterByNumber(status === "locked" ? game.chapter : chapter.number + 1);
      if (!next) return finishQuest();
      travel(next.map, SPAWN);
    }

    function faint() {
      showBanner("You fainted... the guide patches you up.", 2.5, COLORS.danger);
      k.wait(1.5, () => {
        hero.hp = player.stats.maxHp;
        hero.pos = k.vec2(SPAWN.x, SPAWN.y);
      });
    }

    let sinceAutosave = 0;
    let lastSaved = hero.pos.clone();
    world.onUpdate(() => {
      sinceAutosave += k.dt();
      if (sinceAutosave > AUTOSAVE_SECONDS && hero.pos.dist(lastSaved) > TILE) {
        sinceAutosave = 0;
        lastSaved = hero.pos.clone();
        syncPlayer();
        savePlayer();
      }
    });

    world.onKeyPress("enter", () => {
      if (!dialogueOpen && hero.pos.dist(NPC_SPOT.x, NPC_SPOT.y) < TALK_DISTANCE) talk();
    });

    installPauseMenu({
      world,
      canPause: () => !dialogueOpen,
      onOpen: save,
      onQuit: () => {
        save();
        k.go("menu");
      },
    });

    if (status === "done" || status === "locked") addPortal(world, enterPortal, hero);
    else startSubChapter(game.subChapter);
    showBanner(chapter.title, 2.5);

    Object.assign(state.live, {
      map: mapName,
      hero,
      teleport(x, y, map = mapName) {
        const target = clampToWorld({ x, y });
        if (map !== mapName) return travel(map, target);
        hero.pos = k.vec2(target.x, target.y);
      },
    });
  });
}
