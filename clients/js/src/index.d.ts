// The client's types: its own shapes over the gateway's, which openapi.d.ts has (generated:
// `make sdk-types`; a test fails when it no longer matches the gateway's /openapi.json).
import type { components } from "./openapi.js";

type Schemas = components["schemas"];
export type Session = Schemas["Session"];
export type GameConfig = Schemas["GameConfig"];
export type PlayerDocument = Schemas["PlayerDocument"];
export type GameDocument = Schemas["SaveDocument"];
export type LeaderboardEntry = Schemas["LeaderboardEntry"];
export type AroundMe = Schemas["AroundMe"];
export type Seasons = Schemas["Seasons"];
export type SearchResult = Schemas["SearchResult"];
export type Message = Schemas["Message"];

/** A verified run (v3): its token goes with its score. */
export type Run = Schemas["Run"];
/** Everything the server holds about a player (GET /api/account, v3). */
export type Account = Schemas["Account"];

export interface RetryInfo {
  attempt: number;
  waitMs: number;
  /** The answer retried (0: none). */
  status: number;
  reason: string;
}

/** What every call takes besides its own options. */
export interface CallOptions {
  /** Tries in all for a retried answer (default 5; Infinity never gives up). */
  maxAttempts?: number;
  /** Told before each wait for a retry. */
  onRetry?: (retry: RetryInfo) => void;
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** The gateway, e.g. "http://localhost:3000"; "" (the default) in a page it serves. */
  baseUrl?: string;
  fetch?: typeof globalThis.fetch;
  maxAttempts?: number;
  onRetry?: (retry: RetryInfo) => void;
  credentials?: RequestCredentials;
}

/** An answer other than the one asked for; `status` 0 when the server never answered. */
export class ApiError extends Error {
  constructor(status: number, message: string, retryAfterMs?: number | null);
  status: number;
  /** The answer's Retry-After, when it had one (a 429 that asked for a longer wait than is waited). */
  retryAfterMs: number | null;
}

/** A save as stored, with its version. */
export interface Versioned<T> {
  data: T;
  etag: string;
}

/**
 * 412: the save is no longer the version named; `current` is the server's copy (null: none), read
 * right after. Should that read fail, its ApiError is thrown instead.
 */
export class ConflictError<T = PlayerDocument | GameDocument> extends ApiError {
  constructor(message: string, current: Versioned<T> | null);
  current: Versioned<T> | null;
}

/** The RFC 7396 merge patch from `from` to `to`; undefined when none can say it (a null in `to`). */
export function mergePatch(from: object, to: object): Record<string, unknown> | undefined;

export interface Written {
  etag: string;
}

export interface Saves<T extends { id: string }> {
  /** The save, or null when there is none; `id` defaults to the session's. */
  load(id?: string, options?: CallOptions): Promise<Versioned<T> | null>;
  /** The whole document: last write wins, or conditional on `ifMatch` / `ifNoneMatch: "*"` (ConflictError). */
  save(data: T, options?: CallOptions & { ifMatch?: string; ifNoneMatch?: "*" }): Promise<Written>;
  /** A merge patch (null removes a field); ApiError 404 when there is no save. */
  patch(
    fields: Partial<Record<keyof T | string, unknown>>,
    options?: CallOptions & { ifMatch?: string },
  ): Promise<Written>;
  /** True once deleted; false when there was none. */
  delete(id?: string, options?: CallOptions & { ifMatch?: string }): Promise<boolean>;
  search(query: { name?: string; id?: string }, options?: CallOptions): Promise<SearchResult>;
}

export interface Leaderboard {
  readonly key: string;
  /** A page of the current season or of `season`; [] when it has no entries there. */
  page(options?: CallOptions & { count?: number; offset?: number; season?: string }): Promise<LeaderboardEntry[]>;
  /** This player's entry and neighbours; null when it has none. */
  me(options?: CallOptions & { around?: number }): Promise<AroundMe | null>;
  /** Null when the board has no seasons. */
  seasons(options?: CallOptions): Promise<Seasons | null>;
  startRun(options?: CallOptions): Promise<Run>;
  /** Give `name` (member `{name}-{session id}`) or `member`; `run` from startRun() (a 409 after a try that may have landed: that try's). */
  submit(
    score: number,
    options: CallOptions & ({ name: string } | { member: string }) & { run?: string },
  ): Promise<Message>;
  /** The top 10 at once and at each change, reconnecting, until `signal` aborts or the loop leaves. */
  live(options?: CallOptions): AsyncGenerator<LeaderboardEntry[], void, undefined>;
}

export class CacheQuestClient {
  constructor(options?: ClientOptions);
  readonly players: Saves<PlayerDocument>;
  readonly games: Saves<GameDocument>;
  session(options?: CallOptions): Promise<Session>;
  sessionId(): Promise<string>;
  config(options?: CallOptions): Promise<GameConfig>;
  issueRecoveryCode(options?: CallOptions): Promise<string>;
  recover(code: string, options?: CallOptions): Promise<string>;
  leaderboard(key: string): Leaderboard;
  account(options?: CallOptions): Promise<Account>;
  deleteAccount(options?: CallOptions): Promise<void>;
  /** One exchange with the retry rules; for a route this client does not wrap. */
  call(
    method: string,
    path: string,
    options?: CallOptions & { body?: unknown; headers?: Record<string, string>; contentType?: string; safe?: boolean },
  ): Promise<Response>;
}
