// The Cache Quest backend's client: every public route of the gateway, for browsers and Node 20+,
// on the platform's fetch alone. Its types are index.d.ts, over the ones generated from the
// gateway's OpenAPI (openapi.d.ts).

const MAX_BACKOFF_MS = 15000;
// A Retry-After longer than this is not waited for: the caller gets the answer (its ApiError says
// how long, retryAfterMs) to show.
const MAX_RETRY_AFTER_MS = 60000;
const DEFAULT_ATTEMPTS = 5;
// Answers that may go away by themselves. Retried only for calls that are safe to repeat (see call()).
const TRANSIENT = new Set([408, 429, 502, 503, 504]);

/** An answer other than the one asked for: `status` is the HTTP code (0: the server never answered). */
export class ApiError extends Error {
  constructor(status, message, retryAfterMs = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** 412: the save is no longer the version named. `current` is the server's copy now (null: none). */
export class ConflictError extends ApiError {
  constructor(message, current) {
    super(412, message);
    this.name = "ConflictError";
    this.current = current;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", stop);
      resolve();
    }
    function stop() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", stop, { once: true });
  });

/** Exponential backoff with jitter: about 0.4 s, 0.8 s, 1.6 s ... capped at 15 s. */
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
  return Number.isFinite(ms) ? Math.max(ms, 0) : null;
}

async function errorFrom(response) {
  const payload = await response.json().catch(() => ({}));
  return new ApiError(response.status, payload.message ?? `HTTP ${response.status}`, retryAfterMs(response));
}

/** An answer whose status says it all: its body is let go, so the connection serves the next call. */
function without(response, value) {
  response.body?.cancel().catch(() => {});
  return value;
}

async function jsonOrThrow(response) {
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

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

/**
 * The session cookie where the platform leaves cookies to the program (Node): kept from each
 * answer's Set-Cookie, sent back as Cookie. A browser keeps its own and shows a program neither
 * header, so there this stays empty and sends nothing.
 */
class CookieJar {
  #cookies = new Map();

  take(response) {
    for (const line of response.headers.getSetCookie?.() ?? []) {
      const [pair, ...attributes] = line.split(";");
      const at = pair.indexOf("=");
      const name = pair.slice(0, at).trim();
      const gone = attributes.some((attribute) => /^\s*max-age\s*=\s*0\s*$/i.test(attribute));
      if (gone) this.#cookies.delete(name);
      else this.#cookies.set(name, pair.slice(at + 1).trim());
    }
  }

  get header() {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }
}

/** The client of one player: its session is a cookie, in the browser's jar or in the client's own. */
export class CacheQuestClient {
  #jar = new CookieJar();
  #sessionId = null;
  #fetch;

  /**
   * `baseUrl`: the gateway ("" in a page it serves); `fetch`: another implementation; `maxAttempts`
   * and `onRetry`: every call's defaults; `credentials`: fetch's, for a page on another origin.
   */
  constructor({ baseUrl = "", fetch = globalThis.fetch, maxAttempts = DEFAULT_ATTEMPTS, onRetry, credentials } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#fetch = (url, init) => fetch(url, init); // a browser's fetch refuses to be called as a method
    this.defaults = { maxAttempts, onRetry, credentials: credentials ?? "same-origin" };
    this.players = new Saves(this, "/api/playerstate", "playerData");
    this.games = new Saves(this, "/api/gamestate", "gameData");
  }

  /**
   * One HTTP exchange, retried while the answer is transient (TRANSIENT, or no answer) and the call
   * is `safe` to repeat: a read, or a write whose repeat leaves what one would (a DELETE, a
   * conditional or whole-document save, a merge patch, a score). Any call is retried on a
   * 429: the gateway refuses it before it does anything. Resolves with the first other answer; once
   * the attempts are spent, with the last one, or ApiError(0) when the server never answered.
   */
  async call(method, path, { body, headers = {}, contentType = "application/json", safe = false, ...options } = {}) {
    const { maxAttempts = this.defaults.maxAttempts, onRetry = this.defaults.onRetry, signal } = options;
    const url = this.baseUrl + path;
    const sent = { ...headers };
    if (body !== undefined) sent["Content-Type"] = contentType;
    for (let attempt = 1; ; attempt++) {
      const cookie = this.#jar.header;
      let response = null;
      let failure = null;
      try {
        response = await this.#fetch(url, {
          method,
          headers: cookie ? { ...sent, Cookie: cookie } : sent,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: this.defaults.credentials,
          signal,
        });
        this.#jar.take(response);
      } catch (error) {
        if (signal?.aborted) throw error;
        failure = error;
      }
      const status = response?.status ?? 0;
      const retried = status === 429 || (safe && (response === null || TRANSIENT.has(status)));
      const wait = retryAfterMs(response) ?? backoffMs(attempt);
      if (!retried || attempt >= maxAttempts || wait > MAX_RETRY_AFTER_MS) {
        if (response) return response;
        throw Object.assign(new ApiError(0, "The server could not be reached"), { cause: failure });
      }
      if (response) without(response);
      onRetry?.({ attempt, waitMs: wait, status, reason: response ? `HTTP ${status}` : "network error" });
      await sleep(wait, signal);
    }
  }

  async #json(method, path, options) {
    return jsonOrThrow(await this.call(method, path, options));
  }

  /** GET /session: the session (made on the first call), whose id is the player's and the game's. */
  async session(options) {
    const session = await this.#json("GET", "/session", { safe: true, ...options });
    this.#sessionId = session.id;
    return session;
  }

  /** The session id, asking the server once. */
  async sessionId() {
    return this.#sessionId ?? (await this.session()).id;
  }

  /** GET /api/config: maps, board keys, the name rule, score bounds, the season, runs' bounds. */
  config(options) {
    return this.#json("GET", "/api/config", { safe: true, ...options });
  }

  /** POST /session/recovery: a new recovery code, shown once; the one issued before stops working. */
  async issueRecoveryCode(options) {
    return (await this.#json("POST", "/session/recovery", { safe: true, ...options })).code;
  }

  /** POST /session/recover: this client continues as the code's player; resolves with their id. */
  async recover(code, options) {
    const { id } = await this.#json("POST", "/session/recover", { body: { code }, safe: true, ...options });
    this.#sessionId = id;
    return id;
  }

  /** A board by its key (`leaderboards:survivor-Grassland`; GET /api/config lists them). */
  leaderboard(key) {
    return new Leaderboard(this, key);
  }

  /** GET /api/account: everything the server holds about this player (v3). */
  account(options) {
    return this.#json("GET", "/api/account", { safe: true, ...options });
  }

  /** DELETE /api/account: erases all of it and ends the session (v3). Repeating it is harmless. */
  async deleteAccount(options) {
    await this.#json("DELETE", "/api/account", { safe: true, ...options });
    this.#sessionId = null;
  }
}

/** One kind of save: the player's (`client.players`) or the game's (`client.games`). */
class Saves {
  constructor(client, path, field) {
    this.client = client;
    this.path = path;
    this.field = field;
  }

  async #url(id) {
    return `${this.path}/${encodeURIComponent(id ?? (await this.client.sessionId()))}`;
  }

  /** `{data, etag}`, or null when there is no save. `id`: the session's unless given. */
  async load(id, options) {
    const response = await this.client.call("GET", await this.#url(id), { safe: true, ...options });
    if (response.status === 404) return without(response, null);
    return { data: await jsonOrThrow(response), etag: response.headers.get("ETag") };
  }

  /**
   * Writes the whole document; resolves with its new `etag`. With `ifMatch` it replaces only that
   * version, with `ifNoneMatch: "*"` it creates only where there is none, and otherwise it is the
   * seed's last write wins (PATCH, then POST when there was none). A refused precondition throws
   * ConflictError carrying the server's copy.
   */
  async save(data, { ifMatch, ifNoneMatch, ...options } = {}) {
    const body = { [this.field]: data };
    const write = (method, headers = {}) =>
      this.client.call(method, this.path, { body, headers, safe: true, ...options });
    let response;
    if (ifMatch) response = await write("POST", { "If-Match": ifMatch });
    else if (ifNoneMatch) response = await write("POST", { "If-None-Match": ifNoneMatch });
    else {
      response = await write("PATCH");
      if (response.status === 404) response = await write("POST", without(response, {}));
    }
    await this.#refuse(response, data.id);
    return without(response, { etag: response.headers.get("ETag") });
  }

  /**
   * An RFC 7396 merge patch of the stored save (`null` removes a field), atomically; `ifMatch` as
   * for save(). ApiError 404 when there is no save.
   */
  async patch(fields, { ifMatch, ...options } = {}) {
    const id = fields.id ?? (await this.client.sessionId());
    const response = await this.client.call("PATCH", this.path, {
      body: { [this.field]: { ...fields, id } },
      contentType: "application/merge-patch+json",
      headers: ifMatch ? { "If-Match": ifMatch } : {},
      safe: true,
      ...options,
    });
    await this.#refuse(response, id);
    return without(response, { etag: response.headers.get("ETag") });
  }

  /** Throws what a write's refusal is: a 412 as ConflictError with the save `id` now, else ApiError. */
  async #refuse(response, id) {
    if (response.status === 412) throw new ConflictError((await errorFrom(response)).message, await this.load(id));
    if (!response.ok) throw await errorFrom(response);
  }

  /** Deletes the save; resolves true, or false when there was none. `ifMatch` as for save(). */
  async delete(id, { ifMatch, ...options } = {}) {
    const headers = ifMatch ? { "If-Match": ifMatch } : {};
    const response = await this.client.call("DELETE", await this.#url(id), { headers, safe: true, ...options });
    if (response.status === 404) return without(response, false);
    await this.#refuse(response, id);
    return without(response, true);
  }

  /** Full-text search: `{total, documents: [{id, value}]}`; others' saves show only `id` and `name`. */
  async search(query = {}, options) {
    const params = new URLSearchParams(Object.entries(query).filter(([, value]) => value !== undefined));
    return jsonOrThrow(await this.client.call("GET", `${this.path}/search?${params}`, { safe: true, ...options }));
  }
}

/** A page, `/me`, seasons, the live top, runs and scores of one board. */
class Leaderboard {
  constructor(client, key) {
    this.client = client;
    this.key = key;
    this.path = `/api/leaderboard/${encodeURIComponent(key)}`;
  }

  /** `[{value, score, rank}]` from rank `offset + 1`, of the current season or `season`; [] when none. */
  async page({ count = 10, offset = 0, season, ...options } = {}) {
    const params = new URLSearchParams({ count, offset, ...(season === undefined ? {} : { season }) });
    const response = await this.client.call("GET", `${this.path}?${params}`, { safe: true, ...options });
    return response.status === 404 ? without(response, []) : jsonOrThrow(response);
  }

  /** This player's entry and up to `around` neighbours each side; null when it has none. */
  async me({ around = 5, ...options } = {}) {
    const response = await this.client.call("GET", `${this.path}/me?around=${around}`, { safe: true, ...options });
    return response.status === 404 ? without(response, null) : jsonOrThrow(response);
  }

  /** `{current, seasons}` (newest first); null when the board has no seasons. */
  async seasons(options) {
    const response = await this.client.call("GET", `${this.path}/seasons`, { safe: true, ...options });
    return response.status === 404 ? without(response, null) : jsonOrThrow(response);
  }

  /** POST .../runs: a verified run's `{run, startedAt}`, to send with its score (v3). */
  startRun(options) {
    return this.client.call("POST", `${this.path}/runs`, options).then(jsonOrThrow);
  }

  /**
   * Posts a score as `member` or as `name` (member `{name}-{session id}`); the board keeps the
   * player's best, so a repeat changes nothing. `run`: the token of startRun(), which a verified
   * board requires; it is single-use, so a 409 after a try that may have landed (no answer, or
   * one other than a 429, which refuses before anything) is this call's own, landed though its
   * answer was lost: a run is bound to its player, no one else could use it.
   */
  async submit(score, { name, member, run, onRetry = this.client.defaults.onRetry, ...options } = {}) {
    member ??= `${name}-${await this.client.sessionId()}`;
    const body = { key: this.key, score, member, ...(run === undefined ? {} : { run }) };
    let landed = false;
    const told = (retry) => {
      landed ||= retry.status !== 429;
      onRetry?.(retry);
    };
    const response = await this.client.call("POST", "/api/leaderboard", {
      body,
      safe: true,
      ...options,
      onRetry: told,
    });
    if (response.status === 409 && run !== undefined && landed)
      return without(response, { status: 200, message: "Score recorded" });
    return jsonOrThrow(response);
  }

  /**
   * The live top 10 (GET .../live, server-sent events): yields `[{value, score, rank}]` at once and
   * at each change, reconnecting after a dropped stream, until `signal` aborts or the loop leaves.
   * Over fetch rather than EventSource, so it runs in Node too and stops when told.
   */
  async *live({ signal, ...options } = {}) {
    const stop = new AbortController();
    const aborted = () => stop.abort();
    signal?.addEventListener("abort", aborted, { once: true });
    if (signal?.aborted) return;
    let retryMs = null;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const response = await this.client.call("GET", `${this.path}/live`, {
            headers: { Accept: "text/event-stream" },
            safe: true,
            ...options,
            signal: stop.signal,
          });
          if (!response.ok) throw await errorFrom(response);
          for await (const event of events(response.body)) {
            if (event.retry !== undefined) retryMs = event.retry;
            if (event.type !== "top") continue;
            attempt = 1; // a stream that delivers is a fresh start
            yield JSON.parse(event.data);
          }
        } catch (error) {
          if (stop.signal.aborted) return;
          if (error instanceof ApiError) throw error; // refused for good, or out of attempts
        }
        const wait = retryMs ?? backoffMs(attempt);
        options.onRetry?.({ attempt, waitMs: wait, status: 200, reason: "the live stream ended" });
        await sleep(wait, stop.signal).catch(() => {});
        if (stop.signal.aborted) return;
      }
    } finally {
      signal?.removeEventListener("abort", aborted);
      stop.abort();
    }
  }
}

/** The events of a text/event-stream body: `{type, data, retry}`, comments (heartbeats) skipped. */
async function* events(body) {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { type: "message", data: [] };
  const reader = body.getReader(); // not `for await`: Safari's streams are not async iterable
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (event.data.length || event.retry !== undefined) yield { ...event, data: event.data.join("\n") };
        event = { type: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
    }
  }
}
