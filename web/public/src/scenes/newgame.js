// New game: ask for a hero name (letters and digits), create both save documents, start chapter 1.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, resetLive, newPlayerDoc, newGameDoc, NAME_PATTERN } from "../state.js";
import { saveProgress } from "../saves.js";
import { COLORS, addPanel, addLabel, onKeys } from "../ui.js";

const MAX_NAME_LENGTH = 12;

export function registerNewGameScene() {
  k.scene("newgame", () => {
    resetLive("newgame");
    const panel = addPanel(420, 190, k.vec2(WIDTH / 2, HEIGHT / 2));
    addLabel(panel, "Name your hero", k.vec2(0, -66), { size: 22, color: COLORS.gold });
    addLabel(panel, "letters and digits, up to 12", k.vec2(0, -38), { size: 12, color: COLORS.muted });
    panel.add([
      k.rect(300, 36),
      k.pos(0, 0),
      k.anchor("center"),
      k.color(COLORS.paper),
      k.opacity(0.1),
      k.outline(2, COLORS.paper),
    ]);
    const field = addLabel(panel, "", k.vec2(0, 0), { size: 22 });
    const hint = addLabel(panel, "Enter to start, Esc to go back", k.vec2(0, 48), { size: 12, color: COLORS.muted });
    const probe = { name: "" };
    state.live.nameEntry = probe;

    const render = () => {
      const caret = Math.floor(k.time() * 2) % 2 ? "_" : " ";
      field.text = probe.name + (probe.name.length < MAX_NAME_LENGTH ? caret : "");
    };
    panel.onUpdate(render);
    // KAPLAY's onCharInput lowercases letters, so typed characters come from the DOM event instead.
    const typeCharacter = (event) => {
      if (/^[A-Za-z0-9]$/.test(event.key) && probe.name.length < MAX_NAME_LENGTH) probe.name += event.key;
    };
    window.addEventListener("keydown", typeCharacter);
    panel.onDestroy(() => window.removeEventListener("keydown", typeCharacter));
    panel.onKeyPressRepeat("backspace", () => {
      probe.name = probe.name.slice(0, -1);
    });
    onKeys(panel, "enter", () => {
      if (!NAME_PATTERN.test(probe.name)) {
        hint.text = "Type a name first: letters and digits only";
        hint.color = COLORS.danger;
        return;
      }
      state.player = newPlayerDoc(state.sessionId, probe.name);
      state.game = newGameDoc(state.sessionId);
      saveProgress({ create: true });
      k.go("quest");
    });
    onKeys(panel, "escape", () => k.go("menu"));
  });
}
