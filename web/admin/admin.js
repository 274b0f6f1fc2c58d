// The operators' console: a page over the admin API (/admin/api, services/gateway/admin.py).
// The token lives in this tab's sessionStorage only and travels as a bearer header, never a cookie;
// requests omit cookies altogether. Everything shown is built with textContent, never parsed as HTML,
// since names and saves are the players' own text. Pages are hash routes: #/players, #/player/<id>,
// #/boards, #/board/<key>, #/streams, #/audit.
"use strict";

const TOKEN_KEY = "cq-admin-token";
const PAGE_SIZE = 20;
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const nav = document.getElementById("nav");

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick" || name === "onsubmit") node.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function say(message, error = false) {
  statusLine.textContent = message;
  statusLine.classList.toggle("error", error);
}

async function api(method, path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const answer = await fetch(path, {
    method,
    credentials: "omit",
    cache: "no-store",
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = answer.headers.get("content-type") === "application/json" ? await answer.json() : null;
  if (answer.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    signIn("The token was refused: sign in again");
  }
  if (!answer.ok) throw new ApiError(answer.status, (body && body.message) || answer.statusText);
  return body;
}

// A write's answer in the status line; the page is drawn again after it.
async function act(what, method, path) {
  try {
    const answer = await api(method, path);
    say(`${what}: ${answer.message}`);
  } catch (error) {
    say(`${what}: ${error.status || ""} ${error.message}`, true);
  }
  await route();
}

// A button that must be pressed twice: the first press arms it, and it disarms after a few seconds.
function twice(label, armedLabel, onConfirm) {
  const button = el("button", { type: "button", class: "danger" }, label);
  let timer = null;
  button.addEventListener("click", () => {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = armedLabel;
      timer = setTimeout(() => {
        button.classList.remove("armed");
        button.textContent = label;
      }, 5000);
      return;
    }
    clearTimeout(timer);
    onConfirm();
  });
  return button;
}

function table(headings, rows) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, headings.map(([text, cls]) => el("th", { class: cls }, text)))),
    el("tbody", {}, rows)
  );
}

function json(value) {
  return el("pre", {}, value === null ? "none" : JSON.stringify(value, null, 2));
}

function link(href, text) {
  return el("a", { href }, text);
}

// A board's page: its current season, or a past season's archive.
function boardHref(key, offset = 0, season = null) {
  const query = new URLSearchParams();
  if (offset) query.set("offset", offset);
  if (season) query.set("season", season);
  const search = query.toString();
  return `#/board/${encodeURIComponent(key)}${search ? `?${search}` : ""}`;
}

// The page an entry's sorted set is read on: a season's archive (`<board>:season:<label>`) on its
// board's page for that season; all-time, which no public route reads, on its board's.
function entryHref(entry) {
  const [board, label] = entry.key.split(":season:");
  return boardHref(board.replace(/:all-time$/, ""), Math.floor((entry.rank - 1) / PAGE_SIZE) * PAGE_SIZE, label ?? null);
}

// Pages

function signIn(message) {
  nav.hidden = true;
  main.replaceChildren(document.getElementById("sign-in").content.cloneNode(true));
  if (message) say(message, true);
  const form = document.getElementById("token-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    try {
      await api("GET", "/admin/api/audit?count=1");
      say("Signed in");
      if (!location.hash || location.hash === "#/") location.hash = "#/players";
      else await route();
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      say(`Sign in: ${error.message}`, true);
    }
  });
  document.getElementById("token").focus();
}

async function playersPage(query) {
  const term = query.get("q") || "";
  const form = el(
    "form",
    { class: "inline card", id: "finder" },
    el("label", {}, "Name or id", el("input", { name: "q", value: term, required: true, autocomplete: "off" })),
    el("button", { type: "submit", class: "primary" }, "Find")
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/players?q=${encodeURIComponent(new FormData(form).get("q").trim())}`;
  });
  main.replaceChildren(el("h2", {}, "Players"), form);
  if (!term) return;
  const field = /^[0-9a-f]{32}$/.test(term) ? "id" : "name";
  const found = await api("GET", `/admin/api/players?${field}=${encodeURIComponent(term)}`);
  const rows = found.documents.map((hit) =>
    el(
      "tr",
      {},
      el("td", {}, link(`#/player/${encodeURIComponent(hit.value.id)}`, hit.value.id)),
      el("td", {}, hit.value.name ?? ""),
      el("td", {}, json(hit.value))
    )
  );
  main.append(el("p", { id: "found" }, `${found.total} found`), table([["Id"], ["Name"], ["Save"]], rows));
}

async function playerPage(id) {
  const record = await api("GET", `/admin/api/players/${encodeURIComponent(id)}`);
  const path = `/admin/api/players/${encodeURIComponent(id)}`;
  const ban = record.banned
    ? el("button", { type: "button", id: "unban", onclick: () => act("Unban", "DELETE", `${path}/ban`) }, "Unban")
    : twice("Ban", "Really ban?", () => act("Ban", "POST", `${path}/ban`));
  if (!record.banned) ban.id = "ban";
  const entries = record.leaderboards.map((entry) =>
    el(
      "tr",
      {},
      el("td", {}, link(entryHref(entry), entry.key)),
      el("td", {}, entry.season ?? "current"),
      el("td", {}, entry.value),
      el("td", { class: "number" }, entry.score),
      el("td", { class: "number" }, entry.rank),
      el(
        "td",
        {},
        twice("Remove", "Really remove?", () =>
          act("Remove", "DELETE", `/admin/api/leaderboard/${encodeURIComponent(entry.key)}/entries/${encodeURIComponent(entry.value)}`)
        )
      )
    )
  );
  const aside = record.aside.map((kept) =>
    el("tr", {}, el("td", {}, kept.key), el("td", {}, kept.value), el("td", { class: "number" }, kept.score))
  );
  main.replaceChildren(
    el("h2", {}, "Player ", el("code", { id: "player-id" }, record.id)),
    el(
      "p",
      {},
      el("span", { class: record.banned ? "badge bad" : "badge", id: "ban-state" }, record.banned ? "banned" : "not banned"),
      " ",
      el("span", { class: "badge", id: "recovery-state" }, `recovery code ${record.recovery.active ? "active" : "not active"}`),
      " ",
      ban
    ),
    el("div", { class: "grid" }, el("section", {}, el("h3", {}, "Player save"), json(record.saves.player)), el("section", {}, el("h3", {}, "Game save"), json(record.saves.game))),
    el("h3", {}, "Leaderboard entries"),
    entries.length
      ? table([["Board"], ["Season"], ["Entry"], ["Score", "number"], ["Rank", "number"], [""]], entries)
      : el("p", { class: "muted", id: "no-entries" }, "No entries."),
    ...(aside.length ? [el("h3", {}, "Kept aside by the ban"), table([["Board"], ["Entry"], ["Score", "number"]], aside)] : []),
    eraseForm(record.id, path)
  );
}

// Erasing is for good: the button works only once the player's id is typed in full.
function eraseForm(id, path) {
  const typed = el("input", { id: "erase-confirm", autocomplete: "off", placeholder: id, size: 34 });
  const button = el("button", { type: "submit", class: "danger", id: "erase", disabled: true }, "Erase this player");
  typed.addEventListener("input", () => {
    button.disabled = typed.value.trim() !== id;
  });
  const form = el(
    "form",
    { class: "inline card", id: "erase-form" },
    el("label", {}, "To erase everything held about this player (saves, entries, recovery code, sessions), type their id", typed),
    button
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (typed.value.trim() === id) act("Erase", "DELETE", path);
  });
  return form;
}

async function boardsPage() {
  const config = await (await fetch("/api/config", { credentials: "omit" })).json();
  main.replaceChildren(
    el("h2", {}, "Boards"),
    el("ul", {}, Object.entries(config.leaderboards).map(([map, key]) => el("li", {}, link(boardHref(key), map), " ", el("code", {}, key))))
  );
}

async function boardPage(key, query) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const season = query.get("season");
  const read = new URLSearchParams({ count: PAGE_SIZE, offset });
  if (season) read.set("season", season);
  const path = `/api/leaderboard/${encodeURIComponent(key)}`;
  const [answer, seasons] = await Promise.all([
    fetch(`${path}?${read}`, { credentials: "omit" }),
    fetch(`${path}/seasons`, { credentials: "omit" }),
  ]);
  const rows = answer.status === 200 ? await answer.json() : [];
  if (answer.status !== 200 && answer.status !== 404) throw new ApiError(answer.status, (await answer.json()).message);
  const labels = seasons.status === 200 ? (await seasons.json()).seasons : [];
  const target = season ? `${key}:season:${season}` : key; // the sorted set an entry is removed from
  const entries = rows.map((row) =>
    el(
      "tr",
      {},
      el("td", { class: "number" }, row.rank),
      el("td", {}, row.value.includes("-") ? link(`#/player/${encodeURIComponent(row.value.slice(row.value.indexOf("-") + 1))}`, row.value) : row.value),
      el("td", { class: "number" }, row.score),
      el(
        "td",
        {},
        twice("Remove", "Really remove?", () =>
          act("Remove", "DELETE", `/admin/api/leaderboard/${encodeURIComponent(target)}/entries/${encodeURIComponent(row.value)}`)
        )
      )
    )
  );
  main.replaceChildren(
    el("h2", {}, "Board ", el("code", {}, key), season ? ` · season ${season}` : ""),
    labels.length
      ? el("p", {}, "Seasons: ", link(boardHref(key), "current"), labels.map((label) => [" · ", link(boardHref(key, 0, label), label)]))
      : "",
    entries.length ? table([["Rank", "number"], ["Entry"], ["Score", "number"], [""]], entries) : el("p", { class: "muted" }, "No entries here."),
    el(
      "p",
      {},
      offset > 0 ? link(boardHref(key, Math.max(0, offset - PAGE_SIZE), season), "← Previous") : null,
      " ",
      rows.length === PAGE_SIZE ? link(boardHref(key, offset + PAGE_SIZE, season), "Next →") : null
    )
  );
}

async function streamsPage() {
  const view = await api("GET", "/admin/api/streams");
  const streams = view.streams.map((stream) =>
    el(
      "tr",
      {},
      el("td", {}, el("code", {}, stream.key)),
      el("td", { class: "number" }, stream.length),
      el("td", {}, stream.groups.map((group) => el("div", {}, `${group.name}: pending ${group.pending}, lag ${group.lag ?? "unknown"}`)))
    )
  );
  const letters = view.deadLetters.newest.map((letter) => {
    const path = `/admin/api/dead-letters/${encodeURIComponent(letter.id)}`;
    const forced = letter.replay.endsWith("only with --force");
    return el(
      "tr",
      { "data-letter": letter.id },
      el("td", {}, el("code", {}, letter.id), el("div", { class: "muted" }, letter.at)),
      el("td", {}, letter.type, el("div", { class: "muted" }, letter.stream)),
      el("td", {}, letter.session),
      el("td", {}, letter.reason),
      el("td", {}, json(letter.payload)),
      el("td", {}, letter.replay),
      el(
        "td",
        {},
        forced
          ? twice("Replay (force)", "Really replace?", () => act("Replay", "POST", `${path}/replay?force=true`))
          : el("button", { type: "button", class: "replay", onclick: () => act("Replay", "POST", `${path}/replay`) }, "Replay"),
        " ",
        twice("Drop", "Really drop?", () => act("Drop", "DELETE", path))
      )
    );
  });
  main.replaceChildren(
    el("h2", {}, "Streams"),
    table([["Stream"], ["Length", "number"], ["Groups"]], streams),
    el("h2", {}, `Dead letters (${view.deadLetters.total})`),
    letters.length
      ? table([["Id"], ["Type"], ["Player"], ["Reason"], ["Payload"], ["Replay"], [""]], letters)
      : el("p", { class: "muted", id: "no-letters" }, "No dead letters.")
  );
}

async function auditPage() {
  const rows = await api("GET", "/admin/api/audit?count=200");
  main.replaceChildren(
    el("h2", {}, "Audit"),
    table(
      [["When"], ["Operator"], ["Action"], ["Target"], ["Status", "number"]],
      rows.map((row) =>
        el("tr", {}, el("td", { class: "when" }, row.at), el("td", {}, row.operator), el("td", {}, row.action), el("td", {}, el("code", {}, row.target)), el("td", { class: "number" }, row.status))
      )
    )
  );
}

// Routing

async function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    signIn();
    return;
  }
  nav.hidden = false;
  const [path, search] = (location.hash.slice(1) || "/players").split("?");
  const query = new URLSearchParams(search || "");
  const [, page, argument] = path.split("/").map(decodeURIComponent);
  for (const a of nav.querySelectorAll("a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${page}`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  try {
    if (page === "player" && argument) await playerPage(argument);
    else if (page === "boards") await boardsPage();
    else if (page === "board" && argument) await boardPage(argument, query);
    else if (page === "streams") await streamsPage();
    else if (page === "audit") await auditPage();
    else await playersPage(query);
    document.body.dataset.page = page || "players";
  } catch (error) {
    if (error.status !== 401) say(`${error.status || ""} ${error.message}`, true);
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  say("Signed out");
  route();
});
window.addEventListener("hashchange", () => {
  say("");
  route();
});
route();
