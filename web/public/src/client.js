// The game's one client of the backend: @cache-quest/client (clients/js/), which the gateway serves
// at /vendor/cache-quest/. Reads try 5 times (its default); the game's writes keep trying.
import { CacheQuestClient } from "/vendor/cache-quest/index.js";

export const client = new CacheQuestClient();

export const KEEP_TRYING = { maxAttempts: Infinity };
