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
export async function request(method, path, { body, maxAttempts = Infinity, onRetry } = {}) {
  for (let attempt = 1; ; attempt++) {
    let response = null;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
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

/** A save document, or null when the server has none (404). */
async function loadDocument(resource, id) {
  const response = await request("GET", `/api/${resource}/${encodeURIComponent(id)}`, { maxAttempts: READ_ATTEMPTS });
  if (response.status === 404) return null;
  return jsonOrThrow(response);
}

export const loadPlayerData = (id) => loadDocument("playerstate", id);
export const loadGameData = (id) => loadDocument("gamestate", id);

const RESOURCES = {
  player: { path: "/api/playerstate", field: "playerData" },
  game: { path: "/api/gamestate", field: "gameData" },
};

/**
 * The seed's save flow: PATCH the whole document; a 404 means it was never saved, so POST it.
 * `create` skips the PATCH when the caller knows the document is new. Retries until it lands
 * or the server refuses for good (then throws ApiError).
 */
export async function saveDocument(kind, doc, { create = false, onRetry } = {}) {
  const { path, field } = RESOURCES[kind];
  const body = { [field]: doc };
  let response = create ? null : await request("PATCH", path, { body, onRetry });
  if (!response || response.status === 404) response = await request("POST", path, { body, onRetry });
  if (!response.ok) throw await errorFrom(response);
}

/** POST a score; the server keeps the member's best (ZADD GT). */
export async function postScore(key, score, member, { onRetry } = {}) {
  const response = await request("POST", "/api/leaderboard", { body: { key, score, member }, onRetry });
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
