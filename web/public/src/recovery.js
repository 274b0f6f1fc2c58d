// "Play on another device": shows a fresh recovery code, which the title screen of another browser takes.
import { k, WIDTH, HEIGHT } from "./engine.js";
import { client } from "./client.js";
import { state } from "./state.js";
import { COLORS, addPanel, addLabel, onKeys } from "./ui.js";

const NOTE = [
  "On the other device, choose \"I have a code\" on the title screen.",
  "Write it down: it is shown only this once.",
  "Asking for a new code makes this one stop working.",
].join("\n");

/** Asks the server for a code and shows it; Enter or Esc closes the panel and calls `onClose`. */
export function showRecoveryCode(onClose) {
  const panel = addPanel(560, 210, k.vec2(WIDTH / 2, HEIGHT / 2), 150);
  addLabel(panel, "Play on another device", k.vec2(0, -80), { size: 20, color: COLORS.gold });
  const code = addLabel(panel, "Getting a code...", k.vec2(0, -38), { size: 26 });
  addLabel(panel, NOTE, k.vec2(0, 22), { size: 13, color: COLORS.muted, width: 520 });
  addLabel(panel, "Enter: back", k.vec2(0, 82), { size: 12, color: COLORS.muted });
  const probe = { code: null, error: null };
  state.live.recovery = probe;
  client.issueRecoveryCode().then(
    (issued) => {
      probe.code = issued;
      code.text = issued;
    },
    (error) => {
      probe.error = error.message;
      code.text = "No code now: try again later";
      code.textSize = 16;
      code.color = COLORS.danger;
    },
  );
  onKeys(panel, ["enter", "escape"], () => {
    panel.destroy();
    if (state.live.recovery === probe) state.live.recovery = null;
    onClose();
  });
  return panel;
}
