// The seed's design, for the benchmark only: Express, express-session in Redis (connect-redis,
// rolling, no TTL) and each route writing Redis directly: no streams, no workers.
// PATCH checks the document exists (JSON.GET) before JSON.SET, as the seed's update() does.
// GET /ping touches nothing: it shows how many requests/s the load generator can drive.
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const port = Number(process.env.PORT ?? 3100);
const client = createClient({ url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" });
client.on("error", (error) => console.error("redis:", error.message));
await client.connect();

const app = express();
app.use(express.json({ limit: "64kb" }));
app.get("/ping", (_req, res) => res.send("ok"));
app.use(
  session({
    store: new RedisStore({ client, prefix: "sessions:", disableTTL: true }),
    secret: process.env.SESSION_SECRET ?? "bench-only-secret",
    resave: false,
    saveUninitialized: false,
    rolling: true,
    cookie: { maxAge: 7 * 24 * 3600 * 1000, httpOnly: true, sameSite: "lax" },
  }),
);

const owns = (req, id) => typeof id === "string" && id === req.session.playerId;

app.get("/session", (req, res) => {
  req.session.playerId ??= req.sessionID;
  res.json({ id: req.session.playerId });
});

app.post("/api/playerstate", async (req, res) => {
  const doc = req.body?.playerData;
  if (!owns(req, doc?.id)) return res.status(403).json({ status: 403, message: "Forbidden" });
  await client.json.set(`players:${doc.id}`, "$", doc);
  res.json({ status: 200, message: "Player created" });
});

app.patch("/api/playerstate", async (req, res) => {
  const doc = req.body?.playerData;
  if (!owns(req, doc?.id)) return res.status(403).json({ status: 403, message: "Forbidden" });
  if ((await client.json.get(`players:${doc.id}`)) === null) {
    return res.status(404).json({ status: 404, message: "Not Found" });
  }
  await client.json.set(`players:${doc.id}`, "$", doc);
  res.json({ status: 200, message: "Player updated" });
});

app.get("/api/playerstate/:id", async (req, res) => {
  if (!owns(req, req.params.id)) return res.status(403).json({ status: 403, message: "Forbidden" });
  const doc = await client.json.get(`players:${req.params.id}`);
  if (doc === null) return res.status(404).json({ status: 404, message: "Not Found" });
  res.json(doc);
});

app.post("/api/leaderboard", async (req, res) => {
  const { key, score, member } = req.body ?? {};
  if (typeof member !== "string" || !member.endsWith(`-${req.session.playerId}`)) {
    return res.status(403).json({ status: 403, message: "Forbidden" });
  }
  await client.zAdd(key, { score, value: member }, { GT: true });
  res.json({ status: 200, message: "Score recorded" });
});

app.get("/api/leaderboard/:key", async (req, res) => {
  const count = Math.min(Number(req.query.count ?? 10), 100);
  const rows = await client.zRangeWithScores(req.params.key, 0, count - 1, { REV: true });
  if (rows.length === 0) return res.status(404).json({ status: 404, message: "No leaderboard entries found" });
  res.json(rows);
});

app.listen(port, "127.0.0.1", () => console.log(`baseline-node on http://127.0.0.1:${port}`));
