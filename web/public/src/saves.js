// Background saving. Each document has one latest-wins queue: a save replaces the whole document,
// so when saves pile up behind a slow or failing request only the newest snapshot is sent.
//
// Saves are conditional (api.js): when another tab or device saved since, the server answers 412;
// the game then loads that newer save, tells the player, and goes back to the main menu to go on
// from it, rather than overwrite it.
import { k } from "./engine.js";
import { saveDocument, deleteDocument, loadDocument, VersionConflict } from "./api.js";
import { state, touch, withDefaults, newPlayerDoc, newGameDoc } from "./state.js";

/** What the save indicator shows: "idle" | "saving" | "retrying" | "saved" | "failed" | "reloaded". */
export const saveStatus = { phase: "idle", detail: "" };

export const NEWER_SAVE_LOADED = "Another tab or device saved this game since: its newer save is loaded.";

function report(phase, detail = "") {
  saveStatus.phase = phase;
  saveStatus.detail = detail;
}

function reportRetry({ waitMs, reason }) {
  report("retrying", `${reason}, next try in ${(waitMs / 1000).toFixed(1)}s`);
}

/** A message over the game, whatever scene shows: it outlives the change back to the menu. */
function notify(text) {
  let notice = document.getElementById("save-notice");
  if (!notice) {
    notice = document.createElement("div");
    notice.id = "save-notice";
    notice.setAttribute("role", "status");
    Object.assign(notice.style, {
      position: "fixed", top: "12px", left: "50%", transform: "translateX(-50%)", zIndex: "10",
      padding: "8px 14px", background: "#1d1b2a", color: "#f4d35e", border: "2px solid #f4d35e",
      font: "14px monospace", maxWidth: "80vw", textAlign: "center",
    });
    document.body.append(notice);
  }
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => (notice.hidden = true), 8000);
}

/**
 * A 412: read the server's copy. If it is the very snapshot we sent (a try whose answer was lost
 * landed, and its retry met its own version), nothing was lost. Otherwise it is newer than ours:
 * it becomes the game's, and the player is told.
 */
async function adoptNewer(kind, sent) {
  const newer = await loadDocument(kind, state.sessionId);
  if (newer && newer.updatedAt === sent.updatedAt) return false;
  if (kind === "player") {
    state.player = newer && withDefaults(newer, newPlayerDoc(state.sessionId, newer.name));
    if (!state.player) state.game = null;
  } else if (state.player) {
    state.game = withDefaults(newer ?? {}, newGameDoc(state.sessionId));
  }
  return true;
}

function createSaveQueue(kind) {
  let pending = null; // { doc, create } waiting to be sent
  let busy = null; // the drain in progress
  const queue = {
    error: null, // the last permanent refusal, cleared by the next successful save
    get idle() {
      return !busy && !pending;
    },
    enqueue(doc, { create = false } = {}) {
      // A create must not be downgraded to a PATCH by a later snapshot of the same document.
      pending = { doc: structuredClone(doc), create: create || (pending?.create ?? false) };
      if (saveStatus.phase !== "retrying") report("saving");
      busy ??= drain();
    },
    /** Drop what is waiting and let what is in flight finish. */
    async settle() {
      pending = null;
      await busy;
    },
  };

  async function drain() {
    while (pending) {
      const { doc, create } = pending;
      pending = null;
      try {
        await saveDocument(kind, doc, { create, onRetry: reportRetry });
        queue.error = null;
      } catch (error) {
        if (error instanceof VersionConflict) {
          pending = null; // our snapshots are older than the save just loaded
          if (await adoptNewer(kind, doc).catch(() => true)) conflicted();
        } else {
          queue.error = `${kind} save refused: ${error.message}`;
        }
      }
    }
    busy = null;
    settleStatus();
  }

  return queue;
}

const queues = [createSaveQueue("player"), createSaveQueue("game")];
const [playerQueue, gameQueue] = queues;

function conflicted() {
  report("reloaded", NEWER_SAVE_LOADED);
  notify(NEWER_SAVE_LOADED);
  if (k.getSceneName() !== "menu") k.go("menu");
}

function settleStatus() {
  if (queues.some((queue) => !queue.idle) || saveStatus.phase === "reloaded") return;
  const refused = queues.find((queue) => queue.error);
  report(refused ? "failed" : "saved", refused?.error ?? "");
}

/** Saves both documents as they are now. `create` posts them directly (a brand-new game). */
export function saveProgress({ create = false } = {}) {
  touch(state.player);
  touch(state.game);
  playerQueue.enqueue(state.player, { create });
  gameQueue.enqueue(state.game, { create });
}

export function savePlayer() {
  touch(state.player);
  playerQueue.enqueue(state.player);
}

/** Reset progress: after the saves in flight, DELETE both documents; the game starts afresh. */
export async function resetProgress() {
  await Promise.all(queues.map((queue) => queue.settle()));
  await Promise.all([deleteDocument("player", state.sessionId), deleteDocument("game", state.sessionId)]);
  state.player = null;
  state.game = null;
  report("idle");
}

export const allSaved = () => queues.every((queue) => queue.idle) && saveStatus.phase === "saved";
