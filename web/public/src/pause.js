// Esc pause menu: freezes the scene's world, offers Resume, a recovery code and a way back to the main menu.
import { k } from "./engine.js";
import { addMenu } from "./ui.js";
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
  const showMenu = () => {
    menu = addMenu({
      title: "Paused",
      options: [
        { label: "Resume", action: resume },
        { label: "Play on another device", action: () => swap(() => showRecoveryCode(showMenu)) },
        { label: quitLabel, action: onQuit },
      ],
      onBack: resume,
    });
  };
  /** Replaces the menu with another panel of the pause (which keeps the world paused while open). */
  const swap = (open) => {
    menu.destroy();
    menu = open();
  };
  k.onKeyPress("escape", () => {
    if (menu || !canPause()) return; // an open menu closes itself through onBack
    world.paused = true;
    onOpen?.();
    showMenu();
  });
  return { isOpen: () => menu !== null };
}
