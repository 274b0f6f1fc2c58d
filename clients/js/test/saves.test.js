import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, ConflictError, mergePatch } from "../src/index.js";
import { newPlayer } from "./helpers.js";

for (const kind of ["players", "games"]) {
  test(`${kind}: save is the seed's PATCH-then-POST, load gives the data and its version`, async () => {
    const { client, id } = await newPlayer();
    const saves = client[kind];
    assert.equal(await saves.load(), null);
    const created = await saves.save({ id, level: 1 });
    assert.match(created.etag, /^".+"$/);
    assert.deepEqual(await saves.load(), { data: { id, level: 1 }, etag: created.etag });
    const updated = await saves.save({ id, level: 2 });
    assert.notEqual(updated.etag, created.etag);
    assert.deepEqual((await saves.load(id)).data, { id, level: 2 });
  });

  test(`${kind}: a save over a stale version is a ConflictError carrying the newer save`, async () => {
    const { client, id } = await newPlayer();
    const saves = client[kind];
    const { etag } = await saves.save({ id, gold: 1 }, { ifNoneMatch: "*" });
    const newer = await saves.save({ id, gold: 5 }, { ifMatch: etag });
    const conflict = await saves.save({ id, gold: 2 }, { ifMatch: etag }).catch((error) => error);
    assert.ok(conflict instanceof ConflictError && conflict instanceof ApiError);
    assert.equal(conflict.status, 412);
    assert.deepEqual(conflict.current, { data: { id, gold: 5 }, etag: newer.etag });
    // Resolved as a game would: on top of the newer save, with its version.
    await saves.save({ id, gold: 7 }, { ifMatch: conflict.current.etag });
    const again = await saves.save({ id }, { ifNoneMatch: "*" }).catch((error) => error);
    assert.ok(again instanceof ConflictError);
    assert.equal(again.current.data.gold, 7);
  });

  test(`${kind}: a merge patch changes only the fields it names`, async () => {
    const { client, id } = await newPlayer();
    const saves = client[kind];
    const missing = await saves.patch({ gold: 1 }).catch((error) => error);
    assert.equal(missing.status, 404);
    const { etag } = await saves.save({ id, gold: 1, bag: { sword: 1, shield: 1 }, note: "x" });
    const patch = mergePatch({ gold: 1, bag: { sword: 1, shield: 1 }, note: "x" }, { gold: 3, bag: { sword: 1 } });
    assert.deepEqual(patch, { note: null, gold: 3, bag: { shield: null } });
    assert.equal(mergePatch({ gold: 1 }, { gold: null }), undefined, "a null a patch cannot say");
    const patched = await saves.patch(patch, { ifMatch: etag });
    assert.deepEqual((await saves.load()).data, { id, gold: 3, bag: { sword: 1 } });
    const stale = await saves.patch({ gold: 4 }, { ifMatch: etag }).catch((error) => error);
    assert.ok(stale instanceof ConflictError);
    assert.equal(stale.current.etag, patched.etag);
  });

  test(`${kind}: delete answers whether there was a save, and keeps to its version`, async () => {
    const { client, id } = await newPlayer();
    const saves = client[kind];
    const { etag } = await saves.save({ id });
    await saves.save({ id, more: true });
    const stale = await saves.delete(id, { ifMatch: etag }).catch((error) => error);
    assert.ok(stale instanceof ConflictError);
    assert.equal(await saves.delete(), true);
    assert.equal(await saves.delete(), false);
    assert.equal(await saves.load(), null);
  });
}

test("search finds a player by name; others' saves show only id and name", async () => {
  const name = `Seeker${Date.now()}`;
  const { client, id } = await newPlayer();
  await client.players.save({ id, name, secret: 42 });
  const other = await newPlayer();
  const mine = await client.players.search({ name });
  assert.deepEqual(mine, { total: 1, documents: [{ id: `players:${id}`, value: { id, name, secret: 42 } }] });
  const theirs = await other.client.players.search({ name });
  assert.deepEqual(theirs.documents[0].value, { id, name });
  assert.equal((await other.client.games.search({ id: other.id })).total, 0);
});

test("the server's refusals are ApiErrors with its status and message", async () => {
  const { client, id } = await newPlayer();
  const other = await newPlayer();
  const cases = [
    [() => client.players.save({ id: other.id }), 403],
    [() => client.players.load(other.id), 403],
    [() => client.games.delete(other.id), 403],
    [() => client.players.save({ id, name: "no spaces allowed" }), 400],
    [() => client.players.save({ id }, { ifMatch: "not a tag" }), 400],
  ];
  for (const [call, status] of cases) {
    const error = await call().catch((caught) => caught);
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.status, status, error.message);
    assert.ok(error.message.length > 0 && !error.message.startsWith("HTTP"), error.message);
  }
});
