// The package as a game developer gets it: `npm pack`, installed from the tarball into a project of
// their own, imported by name, its types checked with TypeScript, its quick start run.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { GATEWAY } from "./helpers.js";

const PACKAGE = dirname(dirname(fileURLToPath(import.meta.url)));
const TSC = join(PACKAGE, "node_modules/.bin/tsc");

const USE = `
import { ApiError, CacheQuestClient, ConflictError, type LeaderboardEntry } from "@cache-quest/client";

const client = new CacheQuestClient({ baseUrl: process.env.CACHE_QUEST_URL });
const { id } = await client.session();
const { etag } = await client.players.save({ id, name: "Packed", level: 1 });
const loaded = await client.players.load();
const board = client.leaderboard("leaderboards:survivor-Grassland");
await board.submit(10, { name: "Packed" });
const top: LeaderboardEntry[] = await board.page({ count: 3 });
try {
  await client.players.save({ id, level: 2 }, { ifMatch: '"0-1"' });
} catch (error) {
  if (!(error instanceof ConflictError) || !(error instanceof ApiError)) throw error;
  console.log(JSON.stringify({ etag: etag === loaded?.etag, level: error.current?.data.level, top: top.length > 0 }));
}
`;

test("npm pack gives a package that installs, imports by name, type-checks and works", () => {
  const project = mkdtempSync(join(tmpdir(), "cache-quest-client-"));
  try {
    const run = (command, args, options = {}) =>
      execFileSync(command, args, { cwd: project, encoding: "utf8", ...options });
    const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", project], { cwd: PACKAGE }));
    assert.deepEqual(packed.files.map((file) => file.path).sort(), [
      "README.md",
      "package.json",
      "src/index.d.ts",
      "src/index.js",
      "src/openapi.d.ts",
    ]);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "a-game", private: true, type: "module" }));
    run("npm", ["install", "--no-audit", "--no-fund", "--offline", join(project, packed.filename)]);
    assert.deepEqual(
      JSON.parse(readFileSync(join(project, "node_modules/@cache-quest/client/package.json"))).dependencies,
      undefined,
    );

    writeFileSync(join(project, "game.ts"), USE);
    // Without @types/node in that project, `process` is declared for the check.
    writeFileSync(join(project, "env.d.ts"), "declare const process: { env: Record<string, string | undefined> };\n");
    run(TSC, ["--strict", "--module", "nodenext", "--target", "es2022", "--outDir", "out", "game.ts", "env.d.ts"]);
    const output = run("node", ["out/game.js"], { env: { ...process.env, CACHE_QUEST_URL: GATEWAY } });
    assert.deepEqual(JSON.parse(output), { etag: true, level: 1, top: true });
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
});
