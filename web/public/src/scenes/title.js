// Title screen: the logo over a slowly drifting meadow, with the cast bobbing along.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { resetLive } from "../state.js";
import { COLORS, onKeys } from "../ui.js";
import { ensureSession } from "../session.js";

const CAST = ["slime", "bat", "hero", "elder", "scorpion"];

function addLogo(root) {
  const logo = (offset, color) =>
    root.add([
      k.text("CACHE QUEST", { size: 56 }),
      k.pos(WIDTH / 2 + offset, 96 + offset),
      k.anchor("center"),
      k.color(color),
    ]);
  logo(4, COLORS.ink);
  logo(0, COLORS.gold);
  root.add([
    k.text("a Redis-backed adventure", { size: 16 }),
    k.pos(WIDTH / 2, 142),
    k.anchor("center"),
    k.color(COLORS.paper),
  ]);
}

function addCast(root) {
  CAST.forEach((sprite, index) => {
    const actor = root.add([
      k.sprite(sprite, { anim: "move" }),
      k.pos(WIDTH / 2 + (index - 2) * 72, 228),
      k.anchor("center"),
      k.scale(1.5),
    ]);
    actor.onUpdate(() => {
      actor.pos.y = 228 + Math.sin(k.time() * 3 + index) * 6;
    });
  });
}

export function registerTitleScene() {
  k.scene("title", () => {
    resetLive("title");
    ensureSession().catch(() => {}); // start early; the menu reports failures
    const backdrop = k.add([k.sprite("map-Grassland"), k.pos(0, 0), k.color(150, 150, 170)]);
    backdrop.onUpdate(() => {
      backdrop.pos.x = -((k.time() * 12) % 400);
    });
    const root = k.add([k.pos(0, 0), k.fixed()]);
    root.add([k.rect(WIDTH, HEIGHT), k.color(COLORS.ink), k.opacity(0.35)]);
    addLogo(root);
    addCast(root);
    const prompt = root.add([
      k.text("Press Enter", { size: 20 }),
      k.pos(WIDTH / 2, 302),
      k.anchor("center"),
      k.opacity(1),
    ]);
    prompt.onUpdate(() => {
      prompt.opacity = 0.55 + 0.45 * Math.sin(k.time() * 4);
    });
    root.add([
      k.text("C: I have a code from another device", { size: 14 }),
      k.pos(WIDTH / 2, 334),
      k.anchor("center"),
      k.color(COLORS.muted),
    ]);
    onKeys(root, ["enter", "space"], () => k.go("menu"));
    onKeys(root, "c", () => k.go("recover"));
  });
}
