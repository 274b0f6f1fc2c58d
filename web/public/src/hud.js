// In-play overlay: a few lines of text, the hero's health bar and, during a fight, the boss's.
import { k, WIDTH } from "./engine.js";
import { COLORS, addPanel, addLabel } from "./ui.js";

const BAR_WIDTH = 120;

function addBar(parent, pos, width, fillColor) {
  parent.add([k.rect(width + 4, 10), k.pos(pos), k.color(COLORS.ink), k.outline(1, COLORS.paper)]);
  const fill = parent.add([k.rect(width, 6), k.pos(pos.add(2, 2)), k.color(fillColor)]);
  return (ratio) => {
    fill.width = Math.max(0, Math.min(1, ratio)) * width;
  };
}

/**
 * `read()` returns { lines, hp, maxHp } and is asked every frame, also while the world is paused.
 * Returns { showBoss(enemy | null) }.
 */
export function addHud(read) {
  const panel = addPanel(300, 76, k.vec2(156, 44), 90);
  const setHp = addBar(panel, k.vec2(-142, -32), BAR_WIDTH, COLORS.danger);
  const hpText = addLabel(panel, "", k.vec2(-10, -27), { size: 12, anchor: "left" });
  const text = addLabel(panel, "", k.vec2(-142, -16), { size: 12, anchor: "topleft", width: 284 });

  const bossLayer = k.add([k.pos(WIDTH / 2, 16), k.fixed(), k.z(90)]);
  const bossName = addLabel(bossLayer, "", k.vec2(0, 0), { size: 14, color: COLORS.gold, anchor: "top" });
  const setBossHp = addBar(bossLayer, k.vec2(-100, 18), 200, COLORS.gold);
  let boss = null;
  bossLayer.hidden = true;
  bossLayer.onUpdate(() => {
    bossLayer.hidden = !boss || boss.hp <= 0;
    if (!bossLayer.hidden) setBossHp(boss.hp / boss.maxHp);
  });

  panel.onUpdate(() => {
    const { lines, hp, maxHp } = read();
    setHp(hp / maxHp);
    hpText.text = `HP ${hp}/${maxHp}`;
    text.text = lines.join("\n");
  });

  return {
    showBoss(enemy) {
      boss = enemy;
      bossName.text = enemy?.boss.name ?? "";
    },
  };
}
