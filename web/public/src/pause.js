// Esc pause menu: freezes the scene's world, offers Resume, a recovery code, a way back to the main
// menu, and Reset progress (both saves deleted, after a confirmation).
import { k } from "./engine.js";
import { addMenu, showBanner, COLORS } from "./ui.js";
import { resetProgress } from "./saves.js";
import { showRecoveryCode } from "./recovery.js";

/**
 * `onOpen` runs when the game pauses (the quest saves there); `onQuit` leaves the scene.
 * `canPause()` lets a scene refuse, e.g. while a dialogue already holds the world.
 */
export function installPauseMenu({ world, canPause = () => true, onOpen, quitLabel = "Main menu", onQuit }) {
  let menu = null;
  const resume = () => {
    menu.destroy();
    menu = null;
    world.paused = false;
  };
  const showPaused = () => {
    menu?.destroy();
    menu = addMenu({
      title: "Paused",
      options: [
        { label: "Resume", action: resume },
        { label: "Play on another device", action: showCode },
        { label: quitLabel, action: onQuit },
        { label: "Reset progress", action: confirmReset },
      ],
      onBack: resume,
    });
  };
  const showCode = () => {
    menu.destroy();
    menu = showRecoveryCode(() => {
      menu = null; // the code's panel destroyed itself
      showPaused();
    });
  };
  const confirmReset = () => {
    menu.destroy();
    menu = addMenu({
      title: "Erase your hero and story?",
      options: [
        { label: "No, keep them", action: showPaused },
        { label: "Yes, reset progress", action: reset },
      ],
      onBack: showPaused,
      width: 320,
    });
  };
  const reset = () => {
    menu.destroy();
    menu = null;
    resetProgress().then(
      () => k.go("menu"),
      (error) => {
        showBanner(`Could not reset: ${error.message}`, 3, COLORS.danger);
        showPaused();
      },
    );
  };
  k.onKeyPress("escape", () => {
    if (menu || !canPause()) return; // an open menu closes itself through onBack
    world.paused = true;
    onOpen?.();
    showPaused();
  });
  return { isOpen: () => menu !== null };
}
