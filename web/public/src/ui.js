// Screen-space widgets shared by the scenes: menus, dialogue box, banners, save indicator.
import { k, WIDTH, HEIGHT } from "./engine.js";
import { state } from "./state.js";
import { saveStatus } from "./saves.js";

export const COLORS = {
  ink: k.rgb(26, 28, 44),
  paper: k.rgb(244, 244, 244),
  gold: k.rgb(255, 205, 74),
  muted: k.rgb(148, 176, 194),
  danger: k.rgb(239, 125, 87),
  good: k.rgb(167, 240, 112),
};

/**
 * Escapes KAPLAY's styled-text markup ("[tag]", "\\") in strings that come from saves or other
 * players, so a stray bracket in a name is shown instead of breaking the text renderer.
 */
export const plainText = (value) => String(value).replace(/[\\[\]]/g, "\\$&");

export const UP_KEYS = ["up", "w"];
export const DOWN_KEYS = ["down", "s"];
export const LEFT_KEYS = ["left", "a"];
export const RIGHT_KEYS = ["right", "d"];

/** A dark panel with a light border; returns the panel object (children are relative to its centre). */
export function addPanel(width, height, pos, z = 100) {
  return k.add([
    k.rect(width, height, { radius: 4 }),
    k.pos(pos),
    k.anchor("center"),
    k.color(COLORS.ink),
    k.opacity(0.92),
    k.outline(2, COLORS.paper),
    k.fixed(),
    k.z(z),
  ]);
}

export function addLabel(parent, text, pos, { size = 16, color = COLORS.paper, anchor = "center", width } = {}) {
  return parent.add([k.text(text, { size, width }), k.pos(pos), k.anchor(anchor), k.color(color)]);
}

/**
 * Runs `handler` for key presses on `owner`, skipping the frame the owner was created in: the key
 * that opened a widget must not also act inside it.
 */
export function onKeys(owner, keys, handler) {
  let armed = false;
  owner.onUpdate(() => {
    armed = true;
  });
  owner.onKeyPress(keys, (key) => {
    if (armed) handler(key);
  });
}

/**
 * A vertical menu. options: [{ label, action }]. Up/Down (or W/S) select, Enter chooses,
 * Esc calls onBack when given. Returns the panel; destroy it to close the menu.
 */
export function addMenu({ title, options, pos = k.vec2(WIDTH / 2, HEIGHT / 2 + 40), onBack, width = 260 }) {
  const rowHeight = 26;
  const titleHeight = title ? 34 : 0;
  const height = titleHeight + options.length * rowHeight + 20;
  const panel = addPanel(width, height, pos, 150);
  const top = -height / 2 + 10;
  if (title) addLabel(panel, title, k.vec2(0, top + 12), { size: 18, color: COLORS.gold });
  const labels = options.map((option, index) =>
    addLabel(panel, option.label, k.vec2(0, top + titleHeight + index * rowHeight + rowHeight / 2)),
  );
  const probe = { title: title ?? null, options: options.map((option) => option.label), selected: 0 };
  state.live.menu = probe;

  const render = () => {
    labels.forEach((label, index) => {
      const chosen = index === probe.selected;
      label.text = chosen ? `> ${options[index].label} <` : options[index].label;
      label.color = chosen ? COLORS.gold : COLORS.paper;
    });
  };
  const moveSelection = (step) => {
    probe.selected = (probe.selected + step + options.length) % options.length;
    render();
  };
  onKeys(panel, UP_KEYS, () => moveSelection(-1));
  onKeys(panel, DOWN_KEYS, () => moveSelection(1));
  onKeys(panel, "enter", () => options[probe.selected].action());
  if (onBack) onKeys(panel, "escape", onBack);
  panel.onDestroy(() => {
    if (state.live.menu === probe) state.live.menu = null;
  });
  render();
  return panel;
}

/** Shows lines one at a time in a box at the bottom; Enter or Space advances; then onDone(). */
export function showDialogue(speaker, lines, onDone) {
  const panel = addPanel(WIDTH - 40, 96, k.vec2(WIDTH / 2, HEIGHT - 60), 200);
  addLabel(panel, speaker, k.vec2(-WIDTH / 2 + 36, -36), { anchor: "topleft", color: COLORS.gold });
  const body = addLabel(panel, "", k.vec2(-WIDTH / 2 + 36, -12), { anchor: "topleft", size: 14, width: WIDTH - 80 });
  addLabel(panel, "Enter >", k.vec2(WIDTH / 2 - 36, 36), { anchor: "botright", size: 12, color: COLORS.muted });
  let index = 0;
  const probe = { speaker, line: lines[0] };
  state.live.dialogue = probe;
  const showLine = () => {
    body.text = lines[index];
    probe.line = lines[index];
  };
  onKeys(panel, ["enter", "space"], () => {
    index += 1;
    if (index < lines.length) return showLine();
    panel.destroy();
    if (state.live.dialogue === probe) state.live.dialogue = null;
    onDone?.();
  });
  showLine();
  return panel;
}

/** A centred message near the top that fades out; banners shown together stack downwards. */
export function showBanner(text, seconds = 2.5, color = COLORS.gold) {
  const bannersShown = k.get("banner").length;
  const banner = k.add([
    k.text(text, { size: 20, align: "center", width: WIDTH - 60 }),
    k.pos(WIDTH / 2, 130 + bannersShown * 48),
    k.anchor("center"),
    k.color(color),
    k.opacity(1),
    k.fixed(),
    k.z(300),
    "banner",
  ]);
  let age = 0;
  banner.onUpdate(() => {
    age += k.dt();
    banner.opacity = Math.min(1, (seconds - age) / 0.5);
    if (age >= seconds) banner.destroy();
  });
  return banner;
}

const SAVE_LABELS = {
  saving: ["saving...", COLORS.muted],
  saved: ["saved", COLORS.good],
  retrying: ["save failed, retrying", COLORS.danger],
  failed: ["save failed", COLORS.danger],
};

/** Small top-right indicator that mirrors saveStatus; "saved" fades after a moment. */
export function addSaveIndicator() {
  const label = k.add([
    k.text("", { size: 12 }),
    k.pos(WIDTH - 8, 8),
    k.anchor("topright"),
    k.opacity(1),
    k.fixed(),
    k.z(400),
  ]);
  let shownPhase = null;
  let shownFor = 0;
  label.onUpdate(() => {
    if (saveStatus.phase !== shownPhase) {
      shownPhase = saveStatus.phase;
      shownFor = 0;
    }
    shownFor += k.dt();
    const [text, color] = SAVE_LABELS[shownPhase] ?? ["", COLORS.paper];
    label.text = text;
    label.color = color;
    label.opacity = shownPhase === "saved" ? Math.max(0, 1 - (shownFor - 2)) : 1;
  });
  return label;
}
