// "I have a code": a recovery code from another device makes this browser that player, saves and all.
import { k, WIDTH, HEIGHT } from "../engine.js";
import { client } from "../client.js";
import { state, resetLive } from "../state.js";
import { ensureSession, forgetSession } from "../session.js";
import { COLORS, addPanel, addLabel, onKeys } from "../ui.js";

const MAX_TYPED = 29; // 20 characters, with a dash or a space between each group of 4 and some slack
const TYPABLE = /^[0-9A-Za-z -]$/;
const HINT = "Enter to continue as that player, Esc to go back";

export function registerRecoverScene() {
  k.scene("recover", () => {
    resetLive("recover");
    const panel = addPanel(520, 200, k.vec2(WIDTH / 2, HEIGHT / 2));
    addLabel(panel, "I have a code", k.vec2(0, -70), { size: 22, color: COLORS.gold });
    addLabel(panel, "From Pause > Play on another device, on your other device", k.vec2(0, -42), {
      size: 12,
      color: COLORS.muted,
    });
    panel.add([k.rect(420, 36), k.anchor("center"), k.color(COLORS.paper), k.opacity(0.1), k.outline(2, COLORS.paper)]);
    const field = addLabel(panel, "", k.vec2(0, 0), { size: 20 });
    const hint = addLabel(panel, HINT, k.vec2(0, 52), { size: 12, color: COLORS.muted });
    const probe = { code: "", message: "" };
    state.live.codeEntry = probe;
    let checking = false;

    const say = (message, color = COLORS.muted) => {
      probe.message = message;
      hint.text = message;
      hint.color = color;
    };
    panel.onUpdate(() => {
      const caret = Math.floor(k.time() * 2) % 2 ? "_" : " ";
      field.text = probe.code + (probe.code.length < MAX_TYPED ? caret : "");
    });
    // As on the name entry, characters come from the DOM event (KAPLAY's onCharInput lowercases letters).
    const typeCharacter = (event) => {
      if (!checking && TYPABLE.test(event.key) && probe.code.length < MAX_TYPED) probe.code += event.key.toUpperCase();
    };
    window.addEventListener("keydown", typeCharacter);
    panel.onDestroy(() => window.removeEventListener("keydown", typeCharacter));
    panel.onKeyPressRepeat("backspace", () => {
      if (!checking) probe.code = probe.code.slice(0, -1);
    });
    onKeys(panel, "enter", async () => {
      if (checking || !probe.code.trim()) return;
      checking = true;
      say("Checking...");
      try {
        // Tried once: a wrong code or a limit is for the player to read, not to retry.
        await client.recover(probe.code, { maxAttempts: 1 });
        forgetSession();
        await ensureSession();
        k.go("menu");
      } catch (error) {
        checking = false;
        say(error.message, COLORS.danger);
      }
    });
    onKeys(panel, "escape", () => {
      if (!checking) k.go("title");
    });
  });
}
