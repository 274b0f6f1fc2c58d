// Every HTTP call the game makes. Transient failures (network errors, 408, 429, 5xx) are retried
// with exponential backoff; 429 and 503 honour Retry-After. Other answers go back to the caller.

const MAX_BACKOFF_MS = 15000;
const MAX_RETRY_AFTER_MS = 60000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const isTransient = (status) => status === 408 || status === 429 || status >= 500;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter: about 0.4s, 0.8s, 1.6s ... capped at 15s. */
function backoffMs(attempt) {
  const base = Math.min(MAX_BACKOFF_MS, 400 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

/** Retry-After as seconds or an HTTP date; null when absent or unreadable. */
function retryAfterMs(response) {
  const header = response?.headers.get("Retry-After");
  if (!header) return null;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : null;
}

/**
 * fetch() that retries transient failures. `onRetry({attempt, waitMs, reason})` is told before
 * each wait. Resolves with the first non-transient response; after `maxAttempts` it gives up with
 * the last response, or throws ApiError(0) when the network never answered.
 */
export async function request(
  method,
  path,
  { body, headers = {}, contentType = "application/json", maxAttempts = Infinity, onRetry } = {},
) {
  for (let attempt = 1; ; attempt++) {
    let response = null;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        headers: body === undefined ? headers : { ...headers, "Content-Type": contentType },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      response = null; // network failure: transient
    }
    if (response && !isTransient(response.status)) return response;
    if (attempt >= maxAttempts) {
      if (response) return response;
      throw new ApiError(0, "The server could not be reached");
    }
    const waitMs = retryAfterMs(response) ?? backoffMs(attempt);
    onRetry?.({ attempt, waitMs, reason: response ? `HTTP ${response.status}` : "network error" });
    await sleep(waitMs);
  }
}

async function errorFrom(response) {
  const payload = await response.json().catch(() => ({}));
  return new ApiError(response.status, payload.message ?? `HTTP ${response.status}`);
}

async function jsonOrThrow(response) {
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

const READ_ATTEMPTS = 5;

/** GET /api/config: the server's maps, board keys and name rule, which the game follows. */
export async function fetchConfig() {
  const response = await request("GET", "/api/config", { maxAttempts: READ_ATTEMPTS });
  return jsonOrThrow(response);
}

/** GET /session: creates the session cookie on the first visit; the id keys every save. */
export async function fetchSessionId() {
  const response = await request("GET", "/session", { maxAttempts: READ_ATTEMPTS });
  return (await jsonOrThrow(response)).id;
}

const RESOURCES = {
  player: { path: "/api/playerstate", field: "playerData" },
  game: { path: "/api/gamestate", field: "gameData" },
};

/**
 * The server's copy of each document as this tab last read or wrote it: its version (the ETag) and
 * its content. Saves send that version as If-Match, so a save never silently replaces one another
 * tab or device made since (the server answers 412), and a save that changes a few fields sends
 * only those, as a merge patch against it.
 */
export const stored = { player: { etag: null, doc: null }, game: { etag: null, doc: null } };

function remember(kind, response, doc) {
  stored[kind] = { etag: response.headers.get("ETag"), doc: doc === null ? null : structuredClone(doc) };
}

/** A save document, or null when the server has none (404); its version is remembered. */
export async function loadDocument(kind, id) {
  const response = await request("GET", `${RESOURCES[kind].path}/${encodeURIComponent(id)}`, {
    maxAttempts: READ_ATTEMPTS,
  });
  if (response.status === 404) {
    stored[kind] = { etag: null, doc: null };
    return null;
  }
  const doc = await jsonOrThrow(response);
  remember(kind, response, doc);
  return doc;
}

export const loadPlayerData = (id) => loadDocument("player", id);
export const loadGameData = (id) => loadDocument("game", id);

const isPlainObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * The RFC 7396 merge patch that turns `from` into `to`; undefined when none can say it (a null in
 * `to`, which a merge patch reads as "remove").
 */
export function mergePatch(from, to) {
  const patch = {};
  for (const key of Object.keys(from)) if (!(key in to)) patch[key] = null;
  for (const [key, value] of Object.entries(to)) {
    if (value === null) {
      if (from[key] !== null) return undefined;
    } else if (isPlainObject(value) && isPlainObject(from[key])) {
      const inner = mergePatch(from[key], value);
      if (inner === undefined) return undefined;
      if (Object.keys(inner).length) patch[key] = inner;
    } else if (JSON.stringify(value) !== JSON.stringify(from[key])) {
      patch[key] = value;
    }
  }
  return patch;
}

/** Thrown when the server's copy is no longer the version this tab last saw: 412. */
export class VersionConflict extends ApiError {}

// A merge patch is sent when it is at most this share of the whole document.
const PATCH_SHARE = 0.5;

/**
 * Save a document over the version this tab knows (If-Match): as a merge patch when only a few
 * fields changed, else whole. With no version known, it creates the save only if there is none yet
 * (If-None-Match: *), so a save made meanwhile elsewhere is never replaced unseen either; `create`
 * skips the seed's PATCH-then-POST. Retries transient failures; throws VersionConflict on a 412,
 * ApiError when the server refuses for good.
 */
export async function saveDocument(kind, doc, { create = false, onRetry } = {}) {
  const { path, field } = RESOURCES[kind];
  const { etag, doc: base } = stored[kind];
  let response;
  if (etag) {
    const patch = !create && base ? mergePatch(base, doc) : undefined;
    const whole = JSON.stringify(doc).length;
    const headers = { "If-Match": etag };
    if (patch !== undefined && JSON.stringify(patch).length <= whole * PATCH_SHARE) {
      const body = { [field]: { ...patch, id: doc.id } };
      response = await request("PATCH", path, { body, headers, contentType: "application/merge-patch+json", onRetry });
    } else {
      response = await request(create ? "POST" : "PATCH", path, { body: { [field]: doc }, headers, onRetry });
    }
  } else {
    response = await request("POST", path, { body: { [field]: doc }, headers: { "If-None-Match": "*" }, onRetry });
  }
  if (response.status === 412) throw new VersionConflict(412, (await errorFrom(response)).message);
  if (!response.ok) throw await errorFrom(response);
  remember(kind, response, doc);
}

/** DELETE a save; none there (404) is as good. Forgets its version. */
export async function deleteDocument(kind, id) {
  const response = await request("DELETE", `${RESOURCES[kind].path}/${encodeURIComponent(id)}`);
  if (!response.ok && response.status !== 404) throw await errorFrom(response);
  stored[kind] = { etag: null, doc: null };
}

/**
 * Start a verified run on a board: its token, which the run's score carries, or null when the server
 * could not be reached (the score then goes without one, which only a verified board refuses).
 */
export async function startRun(key) {
  const response = await request("POST", `/api/leaderboard/${key}/runs`, { maxAttempts: READ_ATTEMPTS }).catch(
    () => null,
  );
  return response?.ok ? (await response.json()).run : null;
}

/**
 * POST a score, with its run's token when there is one; the server keeps the member's best (ZADD GT).
 * A 409 on a retry is our own first attempt, recorded though its answer was lost: the run is used.
 */
export async function postScore(key, score, member, { run = null, onRetry } = {}) {
  const body = run ? { key, score, member, run } : { key, score, member };
  let retried = false;
  const response = await request("POST", "/api/leaderboard", {
    body,
    onRetry: (info) => {
      retried = true;
      onRetry?.(info);
    },
  });
  if (response.status === 409 && run && retried) return;
  if (!response.ok) throw await errorFrom(response);
}

/** A page of entries `[{value, score, rank}]`, best first, from rank `offset + 1`; 404 (none there) means []. */
export async function fetchLeaderboard(key, count = 10, offset = 0) {
  const response = await request("GET", `/api/leaderboard/${key}?count=${count}&offset=${offset}`, {
    maxAttempts: READ_ATTEMPTS,
  });
  if (response.status === 404) return [];
  return jsonOrThrow(response);
}

/** POST /session/recovery: a new recovery code for this player; the one issued before stops working. */
/** GET /api/account: everything the server holds about this player (saves, board entries, recovery). */
export async function exportAccount() {
  return jsonOrThrow(await request("GET", "/api/account", { maxAttempts: READ_ATTEMPTS }));
}

/** DELETE /api/account: everything the server holds about this player, erased; the cookie goes with it. */
export async function deleteAccount() {
  const response = await request("DELETE", "/api/account", { maxAttempts: READ_ATTEMPTS });
  if (!response.ok) throw await errorFrom(response);
}

export async function issueRecoveryCode() {
  const response = await request("POST", "/session/recovery", { maxAttempts: READ_ATTEMPTS });
  return (await jsonOrThrow(response)).code;
}

/**
 * POST /session/recover: this browser continues as the code's player (the answer sets its cookie).
 * Tried once: a wrong code or a limit's 429 is for the player to read, not to retry.
 */
export async function recoverWithCode(code) {
  const response = await request("POST", "/session/recover", { body: { code }, maxAttempts: 1 });
  return (await jsonOrThrow(response)).id;
}

/**
 * This session's entry and up to `around` neighbours each side: `{rank, score, value, around}`, found
 * by the session id whatever name it posted under; null when it has no entry (404) or no session (401).
 */
export async function fetchAroundMe(key, around = 2) {
  const response = await request("GET", `/api/leaderboard/${key}/me?around=${around}`, {
    maxAttempts: READ_ATTEMPTS,
  });
  if (response.status === 404 || response.status === 401) return null;
  return jsonOrThrow(response);
}
