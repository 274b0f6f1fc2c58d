// Background saving. Each document has one latest-wins queue: a save replaces the whole document,
// so when saves pile up behind a slow or failing request only the newest snapshot is sent.
import { saveDocument } from "./api.js";
import { state, touch } from "./state.js";

/** What the save indicator shows: "idle" | "saving" | "retrying" | "saved" | "failed". */
export const saveStatus = { phase: "idle", detail: "" };

function report(phase, detail = "") {
  saveStatus.phase = phase;
  saveStatus.detail = detail;
}

function reportRetry({ waitMs, reason }) {
  report("retrying", `${reason}, next try in ${(waitMs / 1000).toFixed(1)}s`);
}

function createSaveQueue(kind) {
  let pending = null; // { doc, create } waiting to be sent
  let busy = false;
  const queue = {
    error: null, // the last permanent refusal, cleared by the next successful save
    get idle() {
      return !busy && !pending;
    },
    enqueue(doc, { create = false } = {}) {
      // A create must not be downgraded to a PATCH by a later snapshot of the same document.
      pending = { doc: structuredClone(doc), create: create || (pending?.create ?? false) };
      if (saveStatus.phase !== "retrying") report("saving");
      if (!busy) drain();
    },
  };

  async function drain() {
    busy = true;
    while (pending) {
      const { doc, create } = pending;
      pending = null;
      try {
        await saveDocument(kind, doc, { create, onRetry: reportRetry });
        queue.error = null;
      } catch (error) {
        queue.error = `${kind} save refused: ${error.message}`;
      }
    }
    busy = false;
    settleStatus();
  }

  return queue;
}

const queues = [createSaveQueue("player"), createSaveQueue("game")];
const [playerQueue, gameQueue] = queues;

function settleStatus() {
  if (queues.some((queue) => !queue.idle)) return;
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

export const allSaved = () => queues.every((queue) => queue.idle) && saveStatus.phase === "saved";
