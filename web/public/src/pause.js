// Esc pause menu: freezes the scene's world, offers Resume, a recovery code, a way back to the main
// menu, Reset progress (both saves deleted, after a confirmation), and the player's own data: a
// download of everything the server holds, and its erasure (after a confirmation).
import { k } from "./engine.js";
import { addMenu, showBanner, COLORS } from "./ui.js";
import { resetProgress } from "./saves.js";
import { showRecoveryCode } from "./recovery.js";
import { client } from "./client.js";
import { state } from "./state.js";

/** Offers `data` as a JSON file to save, as a browser download. */
function download(data, fileName) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

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
        { label: "Download my data", action: downloadData },
        { label: "Delete my data", action: confirmDelete },
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
  const downloadData = () => {
    client.account().then(
      (data) => {
        download(data, "cache-quest-my-data.json");
        state.live.account = { exported: data };
        showBanner("Your data was downloaded", 2);
      },
      (error) => showBanner(`Could not download: ${error.message}`, 3, COLORS.danger),
    );
  };
  const confirmDelete = () => {
    menu.destroy();
    menu = addMenu({
      title: "Delete all your data for good?",
      options: [
        { label: "No, keep my data", action: showPaused },
        { label: "Yes, delete my data", action: erase },
      ],
      onBack: showPaused,
      width: 420,
    });
  };
  // The session goes with the data: the page starts over, as a new player.
  const erase = () => {
    menu.destroy();
    menu = null;
    client.deleteAccount().then(
      () => window.location.reload(),
      (error) => {
        showBanner(`Could not delete: ${error.message}`, 3, COLORS.danger);
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
