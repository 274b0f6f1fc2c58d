import assert from "node:assert/strict";
import { test } from "node:test";
import { LIMITED, newPlayer } from "./helpers.js";

const BOARD = "leaderboards:survivor-Badlands";

test("seasons list the past ones, and a past season's page keeps its scores", async () => {
  const { client, id } = await newPlayer(LIMITED);
  const board = client.leaderboard(BOARD);
  const { season } = await client.config();
  assert.equal(season.mode, "every:2s");
  await board.submit(7, { name: "Seasoned" });
  const { current: posted } = await board.seasons();
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, season.endsAt - Date.now()) + 2500));
  const later = await board.seasons();
  assert.notEqual(later.current, posted);
  const past = later.seasons.filter((label) => Number(label) <= Number(posted));
  assert.ok(past.length >= 1, JSON.stringify({ posted, later }));
  const pages = await Promise.all(past.map((label) => board.page({ season: label })));
  assert.ok(
    pages.flat().some((entry) => entry.value === `Seasoned-${id}` && entry.score === 7),
    JSON.stringify(pages),
  );
});
