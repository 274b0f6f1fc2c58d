// New game: ask for a hero name (the server's rule, from /api/config), create both saves, start chapter 1.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { state, config, resetLive, newPlayerDoc, newGameDoc, nameIsValid } from "../state.js";
import { saveProgress } from "../saves.js";
import { COLORS, addPanel, addLabel, onKeys } from "../ui.js";

export function registerNewGameScene() {
  k.scene("newgame", () => {
    resetLive("newgame");
    const panel = addPanel(420, 190, k.vec2(WIDTH / 2, HEIGHT / 2));
    addLabel(panel, "Name your hero", k.vec2(0, -66), { size: 22, color: COLORS.gold });
    const maxLength = config.name.maxLength;
    addLabel(panel, config.name.description, k.vec2(0, -38), { size: 12, color: COLORS.muted });
    panel.add([
      k.rect(300, 36),
      k.pos(0, 0),
      k.anchor("center"),
      k.color(COLORS.paper),
      k.opacity(0.1),
      k.outline(2, COLORS.paper),
    ]);
    const field = addLabel(panel, "", k.vec2(0, 0), { size: 22, width: 290 });
    const hint = addLabel(panel, "Enter to start, Esc to go back", k.vec2(0, 48), { size: 12, color: COLORS.muted });
    const probe = { name: "" };
    state.live.nameEntry = probe;

    const render = () => {
      const caret = Math.floor(k.time() * 2) % 2 ? "_" : " ";
      field.textSize = probe.name.length > 16 ? 13 : 22; // a long name still fits the box
      field.text = probe.name + (probe.name.length < maxLength ? caret : "");
    };
    panel.onUpdate(render);
    // KAPLAY's onCharInput lowercases letters, so typed characters come from the DOM event instead.
    const typeCharacter = (event) => {
      if (event.key.length === 1 && probe.name.length < maxLength && nameIsValid(probe.name + event.key)) {
        probe.name += event.key;
      }
    };
    window.addEventListener("keydown", typeCharacter);
    panel.onDestroy(() => window.removeEventListener("keydown", typeCharacter));
    panel.onKeyPressRepeat("backspace", () => {
      probe.name = probe.name.slice(0, -1);
    });
    onKeys(panel, "enter", () => {
      if (!nameIsValid(probe.name)) {
        hint.text = `Type a name first: ${config.name.description}`;
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
