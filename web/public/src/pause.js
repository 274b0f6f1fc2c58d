// Esc pause menu: freezes the scene's world, offers Resume and a way back to the main menu.
import { k } from "./engine.js";
import { addMenu } from "./ui.js";

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
  k.onKeyPress("escape", () => {
    if (menu || !canPause()) return; // an open menu closes itself through onBack
    world.paused = true;
    onOpen?.();
    menu = addMenu({
      title: "Paused",
      options: [
        { label: "Resume", action: resume },
        { label: quitLabel, action: onQuit },
      ],
      onBack: resume,
    });
  });
  return { isOpen: () => menu !== null };
}
