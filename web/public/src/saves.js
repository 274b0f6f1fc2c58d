// Background saving. Each document has one latest-wins queue: a save replaces the whole document,
// so when saves pile up behind a slow or failing request only the newest snapshot is sent.
//
// Saves are conditional: each is sent over the version this tab last read or wrote (If-Match), so
// when another tab or device saved since, the server answers 412; the game then takes that newer
// save, tells the player, and goes back to the main menu to go on from it, rather than overwrite it.
import { ConflictError, mergePatch } from "/vendor/cache-quest/index.js";
import { client, KEEP_TRYING } from "./client.js";
import { k } from "./engine.js";
import { state, touch, withDefaults, newPlayerDoc, newGameDoc } from "./state.js";

const SAVES = { player: client.players, game: client.games };

/**
 * The server's copy of each document as this tab last read or wrote it: its version (the ETag) and
 * its content, which a save names (If-Match) and, when it changes only a few fields, patches.
 */
const stored = { player: { etag: null, doc: null }, game: { etag: null, doc: null } };

function remember(kind, etag, doc) {
  stored[kind] = { etag, doc: doc === null ? null : structuredClone(doc) };
}

/** A save document, or null when the server has none; its version is remembered. */
export async function loadDocument(kind, id) {
  const found = await SAVES[kind].load(id);
  remember(kind, found?.etag ?? null, found?.data ?? null);
  return found?.data ?? null;
}

// A merge patch is sent when it is at most this share of the whole document.
const PATCH_SHARE = 0.5;

/**
 * Save a document over the version this tab knows (If-Match): as a merge patch when only a few
 * fields changed, else whole. With no version known, it creates the save only if there is none yet
 * (If-None-Match: *), so a save made meanwhile elsewhere is never replaced unseen either. Keeps
 * trying through transient failures; throws ConflictError on a 412, ApiError when refused for good.
 */
async function saveDocument(kind, doc, { create, onRetry }) {
  const { etag, doc: base } = stored[kind];
  const options = { ...KEEP_TRYING, onRetry };
  let written;
  if (etag) {
    const patch = !create && base ? mergePatch(base, doc) : undefined;
    if (patch !== undefined && JSON.stringify(patch).length <= JSON.stringify(doc).length * PATCH_SHARE) {
      written = await SAVES[kind].patch({ ...patch, id: doc.id }, { ...options, ifMatch: etag });
    } else {
      written = await SAVES[kind].save(doc, { ...options, ifMatch: etag });
    }
  } else {
    written = await SAVES[kind].save(doc, { ...options, ifNoneMatch: "*" });
  }
  remember(kind, written.etag, doc);
}

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
 * A 412 carries the server's copy. If it is the very snapshot we sent (a try whose answer was lost
 * landed, and its retry met its own version), nothing was lost. Otherwise it is newer than ours:
 * it becomes the game's, and the player is told.
 */
function adoptNewer(kind, sent, current) {
  remember(kind, current?.etag ?? null, current?.data ?? null);
  const newer = current?.data ?? null;
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
        if (error instanceof ConflictError) {
          pending = null; // our snapshots are older than the save the server holds
          if (adoptNewer(kind, doc, error.current)) conflicted();
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
  await Promise.all(
    Object.entries(SAVES).map(async ([kind, saves]) => {
      await saves.delete(state.sessionId, KEEP_TRYING); // none there is as good
      remember(kind, null, null);
    }),
  );
  state.player = null;
  state.game = null;
  report("idle");
}

export const allSaved = () => queues.every((queue) => queue.idle) && saveStatus.phase === "saved";
